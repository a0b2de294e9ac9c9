"""tfvae on the benchmark architecture, trained the way a user would train it.

`VAE(VAEConfig(input_dim=784, latent_dim=20, hidden_units=(400,), activation="relu",
decoder="bernoulli"))`, `compile()` with Adam(1e-3) and the library's defaults (XLA,
`TrainConfig().steps_per_execution`), `fit` on `tfvae.data.make_dataset(x, 128)`.
The trained model is saved with `tfvae.save_model` for the IWAE evaluation (`bench.tfvae_eval`).
"""

from __future__ import annotations

import time

import numpy as np

from bench import common


def main(argv=None) -> dict:
    p = common.worker_parser(__doc__.splitlines()[0])
    p.add_argument("--save", default=None, help="directory to save the trained model in")
    p.add_argument("--steps-per-execution", type=int, default=None)
    p.add_argument("--no-jit", action="store_true")
    p.add_argument("--name", default="tfvae")
    args = p.parse_args(argv)
    common.pin_tensorflow(args.threads, args.inter_op)
    import tensorflow as tf
    import tf_keras as tfk

    from tfvae import VAE, TrainConfig, VAEConfig, save_model
    from tfvae.data import make_dataset

    tf.random.set_seed(args.seed)
    defaults = TrainConfig()
    spe = args.steps_per_execution or defaults.steps_per_execution
    config = VAEConfig(
        input_dim=784,
        latent_dim=common.LATENT_DIM,
        hidden_units=(common.HIDDEN,),
        activation="relu",
        decoder="bernoulli",
        seed=args.seed,
    )
    model = VAE(config)
    model.compile(
        tfk.optimizers.Adam(common.LEARNING_RATE),
        jit_compile=not args.no_jit,
        steps_per_execution=spe,
    )
    x_train, x_test, eps = common.load_arrays(args.data)
    train = make_dataset(x_train, args.batch_size, shuffle=True, seed=args.seed)
    log = common.EpochLog(args.name, len(x_train), args.batch_size, args.threads)
    evals = common.eval_epochs(args.eval_at, args.epochs)

    @tf.function
    def _encode(xb):
        q = model.encode(xb)  # the distribution object API: q(z|x) ...
        return q.mean(), q.stddev()

    @tf.function
    def _log_px(z, xb):
        return model.decode(z).log_prob(xb)  # ... and p(x|z)

    def encode(xb):
        return tuple(t.numpy() for t in _encode(tf.constant(xb)))

    def log_px(z, xb):
        return _log_px(tf.constant(z), tf.constant(xb)).numpy()

    class Timer(tfk.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start, self.cpu = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            log.epoch(
                time.perf_counter() - self.start, logs["loss"], time.process_time() - self.cpu
            )
            if epoch + 1 in evals:
                metrics = common.negative_elbo(x_test, eps, encode, log_px)
                log.evaluation(epoch + 1, metrics)

    model.fit(
        train, epochs=args.epochs, verbose=0, callbacks=[Timer(), tfk.callbacks.TerminateOnNaN()]
    )
    rss = common.peak_rss_mb()
    if args.save:
        save_model(model, args.save, overwrite=True)
    return log.write(
        args.out,
        framework=f"tfvae on tensorflow {tf.__version__}",
        steps_per_execution=spe,
        jit_compile=not args.no_jit,
        train_peak_rss_mb=rss,
        numpy=np.__version__,
    )


if __name__ == "__main__":
    main()
