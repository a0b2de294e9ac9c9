"""The TFP probabilistic-layers recipe: the VAE written the way TFP's own example writes it.

`tf_keras.Sequential` encoder 784-400 ReLU -> Dense(40) -> `tfpl.IndependentNormal(20)` with
`activity_regularizer=tfpl.KLDivergenceRegularizer(prior, weight=1.0)`; decoder 20-400 ReLU ->
Dense(784) -> `tfpl.IndependentBernoulli`; loss `lambda x, rv_x: -rv_x.log_prob(x)`,
Adam(1e-3), batch 128, `model.fit` on a shuffled, batched, prefetched `tf.data` pipeline.

Flags for the diagnosis in BENCHMARKS.md: `--exact-kl` (the regularizer's default,
`use_exact_kl=False`, is a one-sample Monte Carlo KL), `--kl-weight` (1.0 in the recipe: the
regularizer returns the batch *sum* of KL and Keras divides activity regularizers by the
batch size, but `tfk.Model(encoder.inputs, decoder(encoder.outputs[0]))` collects that loss
*twice*, so the recipe trains with beta = 2; 0.5 restores the ELBO), `--jit` (XLA; the recipe
does not set it) and `--scale exp` (the paper's exp(log-variance / 2), not softplus).
"""

from __future__ import annotations

import numpy as np

from bench import common


def main(argv=None) -> dict:
    p = common.worker_parser(__doc__.splitlines()[0])
    p.add_argument("--kl-weight", default="1.0", help="1.0 (the recipe), or a float")
    p.add_argument("--exact-kl", action="store_true")
    p.add_argument("--jit", action="store_true")
    p.add_argument(
        "--scale",
        choices=("softplus", "exp"),
        default="softplus",
        help="q(z|x)'s scale: IndependentNormal's softplus(raw), or exp(raw / 2) as in the paper",
    )
    p.add_argument("--name", default="tfp_recipe")
    args = p.parse_args(argv)
    common.pin_tensorflow(args.threads, args.inter_op)
    import tensorflow as tf
    import tensorflow_probability as tfp
    import tf_keras as tfk

    tfd, tfpl, tfkl = tfp.distributions, tfp.layers, tfk.layers
    tf.random.set_seed(args.seed)
    weight = float(args.kl_weight)
    latent = common.LATENT_DIM

    def posterior(event_size, activity_regularizer):
        if args.scale == "softplus":  # the recipe
            return tfpl.IndependentNormal(event_size, activity_regularizer=activity_regularizer)
        return tfpl.DistributionLambda(  # diagnosis: the paper's log-variance parametrisation
            lambda t: tfd.Independent(
                tfd.Normal(t[..., :event_size], tf.exp(0.5 * t[..., event_size:])), 1
            ),
            activity_regularizer=activity_regularizer,
        )

    prior = tfd.Independent(
        tfd.Normal(loc=tf.zeros(latent), scale=1.0), reinterpreted_batch_ndims=1
    )
    encoder = tfk.Sequential(
        [
            tfkl.InputLayer(input_shape=(784,)),
            tfkl.Dense(400, activation="relu"),
            tfkl.Dense(tfpl.IndependentNormal.params_size(latent), activation=None),
            posterior(
                latent,
                activity_regularizer=tfpl.KLDivergenceRegularizer(
                    prior, weight=weight, use_exact_kl=args.exact_kl
                ),
            ),
        ]
    )
    decoder = tfk.Sequential(
        [
            tfkl.InputLayer(input_shape=(latent,)),
            tfkl.Dense(400, activation="relu"),
            tfkl.Dense(tfpl.IndependentBernoulli.params_size(784), activation=None),
            tfpl.IndependentBernoulli((784,), tfd.Bernoulli.logits),
        ]
    )
    vae = tfk.Model(inputs=encoder.inputs, outputs=decoder(encoder.outputs[0]))

    def negloglik(x, rv_x):
        return -rv_x.log_prob(x)

    vae.compile(
        optimizer=tfk.optimizers.Adam(learning_rate=common.LEARNING_RATE),
        loss=negloglik,
        jit_compile=args.jit,
    )

    x_train, x_test, eps = common.load_arrays(args.data)
    train = (
        tf.data.Dataset.from_tensor_slices((x_train, x_train))
        .shuffle(len(x_train), seed=args.seed)
        .batch(args.batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    log = common.EpochLog(args.name, len(x_train), args.batch_size, args.threads)
    evals = common.eval_epochs(args.eval_at, args.epochs)

    encode, log_px = common.keras_elbo_probes(encoder, decoder)
    timer = common.keras_epoch_timer(log, evals, x_test, eps, encode, log_px)

    vae.fit(train, epochs=args.epochs, verbose=0, callbacks=[timer])
    return log.write(
        args.out,
        framework=f"tensorflow {tf.__version__}, tfp {tfp.__version__}",
        kl_weight=weight,
        exact_kl=bool(args.exact_kl),
        scale=args.scale,
        jit_compile=bool(args.jit),
        numpy=np.__version__,
    )


if __name__ == "__main__":
    main()
