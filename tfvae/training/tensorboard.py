"""TensorBoard summaries of a VAE run beyond Keras' training scalars: evaluation, pictures, hparams.

Keras' `TensorBoard` callback logs the training loss and ELBO terms per epoch; this one adds,
under `<log_dir>/eval`:

- `val_elbo`, `val_reconstruction` (log p(x|z)) and `val_kl` (and `val_iwae`, for a model
  trained with the IWAE objective) of the evaluation split, every
  `TrainConfig.eval_every_epochs` epochs (`model.evaluate`: its own seeded draws, so the
  training noise, and hence the trained weights, are the same with or without it);
- pictures at the first epoch, every `image_every_epochs` and the last: `reconstructions` (inputs
  above the decoder means for z = E[q(z|x)]) and `samples` (per row one z ~ p(z): the
  decoder mean, then draws x ~ p(x|z)), the figures of `tfvae.plots`;
- the run's hyperparameters (`VAEConfig.*`, `TrainConfig.*`) for the HParams dashboard.

Steps are 0-based epochs, as in Keras' own `epoch_*` scalars.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import os
from typing import Optional

import numpy as np
import tensorflow as tf
import tf_keras as tfk

from tfvae import plots
from tfvae.engine import distribute

__all__ = ["EVAL_DIR", "EvalSummaries", "hparams_of"]

EVAL_DIR = "eval"  # the TensorBoard run (subdirectory of log_dir) these summaries go to
_TERMS = ("elbo", "reconstruction", "kl")


def hparams_of(*configs) -> dict:
    """`{ClassName.field: value}` of config dataclasses, values as the hparams plugin takes
    them (bool, int, float, str; tuples and None as text)."""
    out = {}
    for config in configs:
        for field in dataclasses.fields(config):
            value = getattr(config, field.name)
            if not isinstance(value, (bool, int, float, str)):
                value = str(value)
            out[f"{type(config).__name__}.{field.name}"] = value
    return out


def _png_image(fig) -> tf.Tensor:
    """A matplotlib Figure as a `uint8[1, height, width, 4]` image."""
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=plots.DPI, format="png")
    return tf.image.decode_png(buffer.getvalue(), channels=4)[None]


class EvalSummaries(tfk.callbacks.Callback):
    """Evaluation scalars, pictures and hyperparameters for TensorBoard (see the module).

    `tfvae.training.train.train_and_evaluate` fits a copy made by `for_run` with its test
    split and configs, so `make_callbacks(workdir)` needs no data; with plain `fit`, pass
    `x_eval` (and `hparams`, e.g. `hparams_of(model.config, train_config)`) yourself.

    Args:
      log_dir: TensorBoard's log directory (the one given to Keras' `TensorBoard`).
      x_eval: `[num_examples, input_dim]` evaluation data; None: no scalars nor pictures.
      every_epochs: evaluate every this many epochs (0: never).
      image_every_epochs: draw the pictures every this many epochs (and at the first and
        the last; 0: never).
      hparams: `{name: value}` written once when training begins.
      batch_size: evaluation batch size.
      num_images: examples reconstructed and prior latents z drawn (4 draws each), per picture.
      seed: the seed of the prior draws (the same z in every picture).
    """

    def __init__(
        self,
        log_dir: str,
        x_eval: Optional[np.ndarray] = None,
        every_epochs: int = 1,
        image_every_epochs: int = 20,
        hparams: Optional[dict] = None,
        batch_size: int = 100,
        num_images: int = 6,
        seed: int = 0,
    ):
        super().__init__()
        self.log_dir = os.fspath(log_dir)
        self.x_eval = x_eval
        self.every_epochs = int(every_epochs)
        self.image_every_epochs = int(image_every_epochs)
        self.hparams = hparams
        self.batch_size = int(batch_size)
        self.num_images = int(num_images)
        self.seed = int(seed)
        self._writer = None

    def for_run(self, x_eval, model_config, train_config) -> EvalSummaries:
        """A copy with the evaluation data, cadence and hyperparameters of a
        `train_and_evaluate` run; this one is left as it was."""
        run = copy.copy(self)
        run.x_eval = x_eval
        run.every_epochs = train_config.eval_every_epochs
        run.batch_size = train_config.batch_size
        run.hparams = hparams_of(model_config, train_config)
        run.seed = model_config.seed
        return run

    def attach(self, *args, **kwargs):
        raise AttributeError(
            "EvalSummaries.attach is gone: use EvalSummaries.for_run, which returns a copy"
        )

    def on_train_begin(self, logs=None):
        if distribute.is_chief(self.model.distribute_strategy):
            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, EVAL_DIR))
        else:  # other workers evaluate with the chief (collectives) but write nothing
            self._writer = tf.summary.create_noop_writer()
        if self.hparams:
            from tensorboard.plugins.hparams import api as hp

            with self._writer.as_default():
                hp.hparams(self.hparams)
            self._writer.flush()

    def on_epoch_end(self, epoch, logs=None):
        if self.x_eval is None or len(self.x_eval) == 0:
            return
        done, last = int(epoch) + 1, self.params.get("epochs")
        evaluate = self.every_epochs > 0 and done % self.every_epochs == 0
        draw = self.image_every_epochs > 0 and (
            done == 1 or done % self.image_every_epochs == 0 or done == last
        )
        if not (evaluate or draw):
            return
        with self._writer.as_default(step=int(epoch)):
            if evaluate:
                results = self.model.evaluate(
                    self.x_eval, batch_size=self.batch_size, verbose=0, return_dict=True
                )
                iwae = ("iwae",) if "iwae" in results else ()  # the IWAE objective's bound
                for term in _TERMS + iwae:
                    tf.summary.scalar(f"val_{term}", results[term])
            if draw:
                self._write_pictures()
        self._writer.flush()

    def _write_pictures(self):
        model = self.model
        shape = plots.image_shape_of(model)
        x = self.x_eval[: self.num_images]
        tf.summary.image(
            "reconstructions", _png_image(plots.model_reconstructions(model, x, shape))
        )
        figure = plots.model_mean_and_draws(model, self.num_images, 4, self.seed, shape)
        tf.summary.image("samples", _png_image(figure))

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
