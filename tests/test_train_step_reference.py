"""`fit` takes exactly the Adam steps of the paper's loss, written out by hand in numpy.

An independent reference for the whole training step: the MLP forward pass, the loss
-log p(x|z) + KL(q(z|x) || N(0, I)) averaged over the batch (App. B, C.1), its gradients by
the chain rule (no autodiff), and Keras' Adam update, in float64. The only thing taken from
tfvae is the documented noise: step t draws z = mu + sigma * eps with the stateless seed
(4 * config.seed, t), eps being TFP's standard-normal draw for that seed.
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as tfk
from helpers import np_soft_clip

from tfvae import VAE, VAEConfig
from tfvae.engine.distribute import replica_seed

ACTIVATIONS = {
    "relu": (lambda a: np.maximum(a, 0.0), lambda a: (a > 0).astype(np.float64)),
    "tanh": (np.tanh, lambda a: 1.0 - np.tanh(a) ** 2),
}


def step_noise(config, step, n, jit_compile):
    """TFP's standard-normal draw for step `step`'s seed, made where `fit` makes it: a
    stateless seed picks its bit generator per device (TF's CPU kernel or XLA). Step t's seed
    is (4 * config.seed, t), as the `VAE` docstring states."""
    seed = replica_seed(tf.constant([config.seed * 4, step], tf.int32))
    zeros = tf.zeros([n, config.latent_dim])
    std = tfp.distributions.MultivariateNormalDiag(zeros, tf.ones_like(zeros))
    draw = tf.function(lambda: std.sample(seed=seed), jit_compile=jit_compile)
    return draw().numpy().astype(np.float64)


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def loss_and_gradients(w, x, eps, activation, low, high):
    """Mean over the batch of softplus(l) - x*l summed over pixels (-log Bernoulli(x | logits
    l)) plus 0.5 * sum(mu^2 + e^lv - 1 - lv); gradients w.r.t. the 10 weights, by hand.
    The log-variance head's output r is soft-clipped (`VAEConfig.min_log_var/max_log_var`):
    lv = low + softplus(r - low) - softplus(r - high)."""
    act, act_grad = ACTIVATIONS[activation]
    w1, b1, wm, bm, wv, bv, w3, b3, w4, b4 = w
    n = len(x)
    a1 = x @ w1 + b1
    h1 = act(a1)
    mu, raw = h1 @ wm + bm, h1 @ wv + bv
    lv = np_soft_clip(raw, low, high)
    sigma = np.exp(0.5 * lv)
    z = mu + sigma * eps
    a3 = z @ w3 + b3
    h3 = act(a3)
    logits = h3 @ w4 + b4
    nll = np.sum(np.logaddexp(0.0, logits) - x * logits, axis=1)
    kl = 0.5 * np.sum(mu**2 + np.exp(lv) - 1.0 - lv, axis=1)
    loss = np.mean(nll + kl)

    d_logits = (sigmoid(logits) - x) / n
    d_a3 = (d_logits @ w4.T) * act_grad(a3)
    d_z = d_a3 @ w3.T
    d_mu = d_z + mu / n
    d_lv = (d_z * eps * sigma * 0.5 + 0.5 * (np.exp(lv) - 1.0) / n) * (
        sigmoid(raw - low) - sigmoid(raw - high)
    )
    d_a1 = (d_mu @ wm.T + d_lv @ wv.T) * act_grad(a1)
    grads = [
        x.T @ d_a1, d_a1.sum(0), h1.T @ d_mu, d_mu.sum(0), h1.T @ d_lv, d_lv.sum(0),
        z.T @ d_a3, d_a3.sum(0), h3.T @ d_logits, d_logits.sum(0),
    ]  # fmt: skip
    return loss, grads


class Adam:
    """tf_keras' Adam: alpha = lr sqrt(1 - b2^t) / (1 - b1^t), w -= alpha m / (sqrt(v) + eps)."""

    def __init__(self, weights, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        self.lr, self.b1, self.b2, self.eps, self.t = lr, beta_1, beta_2, epsilon, 0
        self.m = [np.zeros_like(w) for w in weights]
        self.v = [np.zeros_like(w) for w in weights]

    def step(self, weights, grads):
        self.t += 1
        alpha = self.lr * np.sqrt(1 - self.b2**self.t) / (1 - self.b1**self.t)
        for w, g, m, v in zip(weights, grads, self.m, self.v):
            m += (g - m) * (1 - self.b1)
            v += (g * g - v) * (1 - self.b2)
            w -= alpha * m / (np.sqrt(v) + self.eps)


@pytest.mark.slow
@pytest.mark.parametrize(
    "activation, steps_per_execution, jit_compile",
    # relu, 2 steps per execution, XLA: the two full batches of an epoch run as one fused
    # group (tfvae.engine.fused_steps), the short one alone.
    [("relu", 2, True), ("tanh", 1, True), ("tanh", 3, False)],
)
def test_fit_matches_numpy_reference(activation, steps_per_execution, jit_compile):
    # Log-variance bounds close enough to matter: the encoder's raw log-variances are ~ +-1.
    log_var_bounds = (-2.0, 3.0)
    config = VAEConfig(
        input_dim=10,
        latent_dim=3,
        hidden_units=(8,),
        activation=activation,
        min_log_var=log_var_bounds[0],
        max_log_var=log_var_bounds[1],
        seed=3,
    )
    # Grey levels in (0, 1): no pixel is exactly 0, so no gradient is exactly zero, where
    # float32 rounding could decide the sign of Adam's first step.
    x = np.random.default_rng(1).uniform(0.05, 0.95, (40, 10)).astype(np.float32)
    model = VAE(config)
    model.compile(
        tfk.optimizers.Adam(0.01),
        steps_per_execution=steps_per_execution,
        jit_compile=jit_compile,
    )
    weights = [v.numpy().astype(np.float64) for v in model.trainable_variables]
    history = model.fit(x, batch_size=16, epochs=2, shuffle=False, verbose=0)
    if steps_per_execution == 2:
        assert int(model.train_function.fused_steps_run) == 2 * 2

    adam, step, losses = Adam(weights, lr=0.01), 0, []
    for _ in range(2):
        epoch_losses = []
        for start in range(0, len(x), 16):  # batches of 16, 16 and the short 8
            xb = x[start : start + 16].astype(np.float64)
            loss, grads = loss_and_gradients(
                weights,
                xb,
                step_noise(config, step, len(xb), jit_compile),
                activation,
                *log_var_bounds,
            )
            adam.step(weights, grads)
            epoch_losses.append((loss, len(xb)))
            step += 1
        losses.append(sum(value * k for value, k in epoch_losses) / len(x))

    assert int(model.optimizer.iterations) == step == 6
    for variable, expected in zip(model.trainable_variables, weights):
        np.testing.assert_allclose(
            variable.numpy(), expected, rtol=1e-4, atol=2e-5, err_msg=variable.name
        )
    # Keras reports each epoch's per-example mean loss (weights before each step).
    np.testing.assert_allclose(history.history["loss"], losses, rtol=1e-4)
