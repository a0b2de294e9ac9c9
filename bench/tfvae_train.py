"""tfvae on the benchmark architecture, trained the way a user would train it.

`VAE(VAEConfig(input_dim=784, latent_dim=20, hidden_units=(400,), activation="relu",
decoder="bernoulli"))`, `compile(Adam(1e-3))` with no speed arguments (the library's
defaults: XLA, `STEPS_PER_EXECUTION` steps per call, `FUSED_STEPS` per program), `fit` on
`make_dataset(x, 128)` (`--input arrays`: on the array, `fit(x, batch_size=128)`, the
README's snippet). `--steps-per-execution` / `--fused-steps` set them instead (1: Keras'
one step per call, the default before). The default initialisation (`fan_in_uniform`) is
PyTorch's `nn.Linear` one, as in the PyTorch reference; `--weight-init glorot_uniform`
starts from Keras' instead. `--compile-cache DIR` keeps XLA's programs in DIR across
processes (`tfvae.engine.xla_cache`, as the CLI does). The trained model is saved with
`tfvae.save_model` for the evaluation (`bench.tfvae_eval`).
"""

from __future__ import annotations

import numpy as np

from bench import common


def main(argv=None) -> dict:
    p = common.worker_parser(__doc__.splitlines()[0])
    p.add_argument("--save", default=None, help="directory to save the trained model in")
    p.add_argument("--steps-per-execution", type=int, default=None, help="(default: compile's)")
    p.add_argument("--fused-steps", type=int, default=None, help="(default: compile's)")
    p.add_argument("--input", choices=("dataset", "arrays"), default="dataset")
    p.add_argument("--no-jit", action="store_true")
    p.add_argument("--name", default="tfvae")
    p.add_argument("--weight-init", default=None, help="VAEConfig.weight_init (default: its)")
    p.add_argument("--compile-cache", default=None, help="persistent XLA cache directory")
    args = p.parse_args(argv)
    if args.compile_cache:
        import os

        from tfvae.engine import xla_cache

        os.environ[xla_cache.ENV] = args.compile_cache
        xla_cache.enable()  # before TensorFlow starts (a no-op in the in-process smoke test)
    common.pin_tensorflow(args.threads, args.inter_op)
    import tensorflow as tf
    import tf_keras as tfk

    from tfvae import VAE, save_model
    from tfvae.data.input_pipeline import make_dataset
    from tfvae.engine import keras_internals

    tf.random.set_seed(args.seed)
    speed = {
        key: value
        for key, value in (
            ("steps_per_execution", args.steps_per_execution),
            ("fused_steps", args.fused_steps),
        )
        if value is not None
    }
    config = common.tfvae_config(args.seed, args.weight_init)
    model = VAE(config)
    model.compile(tfk.optimizers.Adam(common.LEARNING_RATE), jit_compile=not args.no_jit, **speed)
    x_train, x_test, eps = common.load_arrays(args.data)
    if args.input == "arrays":
        train, fit = x_train, {"batch_size": args.batch_size, "shuffle": True}
    else:
        train, fit = make_dataset(x_train, args.batch_size, shuffle=True, seed=args.seed), {}
    log = common.EpochLog(args.name, len(x_train), args.batch_size, args.threads)
    evals = common.eval_epochs(args.eval_at, args.epochs)

    # The distribution object API: model.encoder(x) is q(z|x), model.decoder(z) is p(x|z).
    encode, log_px = common.keras_elbo_probes(model.encoder, model.decoder)
    timer = common.keras_epoch_timer(log, evals, x_test, eps, encode, log_px)

    model.fit(
        train,
        epochs=args.epochs,
        verbose=0,
        callbacks=[timer, tfk.callbacks.TerminateOnNaN()],
        **fit,
    )
    rss = common.peak_rss_mb()
    if args.save:
        save_model(model, args.save, overwrite=True)
    return log.write(
        args.out,
        framework=f"tfvae on tensorflow {tf.__version__}",
        steps_per_execution=int(keras_internals.steps_per_execution(model).numpy()),
        fused_steps=model._fused_steps,
        input=args.input,
        compile_cache=args.compile_cache,
        fused_group_length=getattr(model.train_function, "group_length", None),
        fused_steps_run=int(getattr(model.train_function, "fused_steps_run", 0)),
        jit_compile=not args.no_jit,
        weight_init=config.weight_init,
        train_peak_rss_mb=rss,
        numpy=np.__version__,
    )


if __name__ == "__main__":
    main()
