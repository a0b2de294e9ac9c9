"""Writes the notebooks under notebooks/ from the cells below, with no outputs.

Edit the cells here, then run `python scripts/make_notebooks.py [OUT_DIR]`; the committed
.ipynb files are generated, so they never carry stale outputs. Every notebook reads `TFVAE_SMALL=1`
(set by tests/test_notebooks.py) to train for a few epochs only.
"""

from __future__ import annotations

import os

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = os.path.dirname(os.path.abspath(__file__))
NOTEBOOKS = os.path.join(os.path.dirname(HERE), "notebooks")

SETUP = """\
%matplotlib inline
import os
import tempfile

import numpy as np
import tensorflow as tf

import tfvae
from tfvae import plots

SMALL = os.environ.get("TFVAE_SMALL", "") not in ("", "0")  # tests: a few epochs only
WORKDIR = tempfile.mkdtemp(prefix="tfvae-notebook-")  # nothing of yours is overwritten"""


def md(text: str):
    return new_markdown_cell(text.strip())


def code(text: str):
    return new_code_cell(text.strip())


QUICKSTART = [
    md("""
# Quickstart: train, evaluate, generate, export

A VAE on the 8x8 digits that ship inside tfvae (no download), in four steps. The
command line does the same in one: `tfvae run`.
"""),
    code(SETUP + '\nEPOCHS = 3 if SMALL else 100\nprint("epochs:", EPOCHS)'),
    md("""
## 1. Train

`train_and_evaluate` fits the model and saves config + weights under the work directory.
The loss is the negative ELBO: -log p(x|z) + KL(q(z|x) || p(z)), in nats per example.
"""),
    code("""
from tfvae.data.datasets import load_default

data = load_default()  # binarized digits, [N, 64]
config = tfvae.VAEConfig(
    input_dim=data.input_dim, latent_dim=2, hidden_units=(200,), image_shape=data.image_shape
)
train_config = tfvae.TrainConfig(epochs=EPOCHS, batch_size=32, eval_samples=20 if SMALL else 500)
model, history, metrics = tfvae.train_and_evaluate(
    config, train_config, data, os.path.join(WORKDIR, "run"), verbose=0
)
plots.training_curves(history)
"""),
    md("""
## 2. Evaluate

The test ELBO is a lower bound on log p(x); the importance-weighted estimate (IWAE, K
samples) is a tighter one. Bits per dimension divide the negative log-likelihood by
D log 2.
"""),
    code("""
print(f"test ELBO      {metrics['elbo']:8.3f} nats/example")
print(f"test log p(x) >= {metrics['log_likelihood']:8.3f} nats/example "
      f"(K = {metrics['log_likelihood_samples']}), {metrics['nll_bits_per_dim']:.4f} bits/dim")
assert metrics["log_likelihood"] > metrics["elbo"] - 1.0  # IWAE is the tighter bound
"""),
    md("""
## 3. Generate

z ~ p(z) = N(0, I), then x ~ p(x|z). `generate(..., output="mean")` returns the decoder
means instead of draws.
"""),
    code("""
samples = model.generate(16, seed=0)  # binary draws x ~ p(x|z)
plots.prior_samples(samples, data.image_shape)
"""),
    code("""
z_mean = model.encode(data.x_test).mean().numpy()
plots.latent_scatter(z_mean, data.y_test)
"""),
    md("""
## 4. Export for TF Serving

`tfvae.serving.export` writes a SavedModel in TF Serving's layout `<base>/<name>/<version>`;
the next free version is chosen, an existing one is never replaced.
"""),
    code("""
from tfvae.serving.export import export, load_exported

path = export(model, os.path.join(WORKDIR, "saved_models", "digits"))
print(path, sorted(os.listdir(path)))
exported = load_exported(path)  # the signatures, callable with numpy inputs
print(sorted(exported.keys()))
print(exported["serving_default"](x=data.x_test[:2]).keys())
"""),
]

DECODER = [
    md("""
# "If z is fixed the decoder output is fixed, so why p(x|z)?"

Because the decoder outputs the **parameters** of a distribution over x. For a fixed z the
parameters are fixed; x is still random. This notebook shows it with a Bernoulli decoder
(binary pixels) and a Gaussian one (grey levels), and why tutorials call the mean x-hat.
"""),
    code(
        SETUP
        + """
from tfvae.data.datasets import load_default

EPOCHS = 3 if SMALL else 100


def fit(decoder, data):
    config = tfvae.VAEConfig(input_dim=data.input_dim, latent_dim=2, decoder=decoder,
                             hidden_units=(200,), image_shape=data.image_shape)
    model = tfvae.VAE(config)
    model.compile()
    model.fit(data.x_train, epochs=EPOCHS, batch_size=32, verbose=0)
    return model


binary = load_default()                       # pixels in {0, 1}
grey = load_default(binarization="none")      # pixels in [0, 1]
bernoulli = fit("bernoulli", binary)
gaussian = fit("gaussian", grey)"""
    ),
    md("""
## Two parallel heads

The Gaussian decoder ends in two Dense layers fed by the same hidden layer: `x_mean` gives
the D means, `x_log_var` the D log-variances (App. C.2). A
`DistributionLambda` turns them into N(mean, diag(exp(log_var))). The Bernoulli decoder
has one head, `x_logits`.
"""),
    code("gaussian.decoder.summary()"),
    code("""
for name in ("x_mean", "x_log_var"):
    layer = gaussian.decoder.get_layer(name)
    print(f"{name:10s} <- {layer.input.name.split('/')[0]:16s} units={layer.units}")
print("bernoulli heads:", [l.name for l in bernoulli.decoder.layers if l.name.startswith("x_")])
"""),
    md("""
## Fixed z: fixed parameters, random x

Decode the same z twice: the parameters agree exactly; draws from them do not.
"""),
    code("""
z = np.array([[0.5, -1.0]], np.float32)
for model in (bernoulli, gaussian):
    p1, p2 = model.decode(z), model.decode(z)
    same = np.array_equal(p1.mean().numpy(), p2.mean().numpy())
    draws = p1.sample(4, seed=[1, 2]).numpy()[:, 0]
    print(f"{model.config.decoder:9s}: same parameters: {same}; "
          f"pixel std across 4 draws: {draws.std(axis=0).mean():.3f}")
"""),
    code("""
z = np.random.default_rng(0).normal(size=(3, 2)).astype(np.float32)
px = bernoulli.decode(z)
plots.mean_and_draws(px.mean().numpy(), px.sample(5, seed=[0, 1]).numpy(), binary.image_shape,
                     title="Bernoulli: each row one z; the mean, then x ~ p(x|z)")
"""),
    code("""
px = gaussian.decode(z)
plots.mean_and_draws(px.mean().numpy(), px.sample(5, seed=[0, 1]).numpy(), grey.image_shape,
                     title="Gaussian: each row one z; the mean, then x ~ p(x|z)")
"""),
    md("""
## Why tutorials call the mean x-hat

For the Bernoulli decoder the mean is sigmoid(logits): the probability that each pixel is
on. A picture of those probabilities looks like an image, so it is shown as "the
reconstruction". Its log-likelihood is the (negative) binary cross-entropy that tutorials
use as loss, and for a Gaussian with a fixed variance the log-likelihood is a squared error
up to constants: minimising MSE is maximising log p(x|z), and the mean is the best guess
under squared error.
"""),
    code("""
x = binary.x_test[:5]
px = bernoulli(x, seed=0)
probs = tf.sigmoid(px.distribution.logits_parameter()).numpy()
print("mean == sigmoid(logits):", np.allclose(px.mean().numpy(), probs))
bce = -(x * np.log(probs) + (1 - x) * np.log1p(-probs)).sum(axis=1)
print("log p(x|z) == -BCE:     ", np.allclose(px.log_prob(x).numpy(), -bce, atol=1e-3))

fixed = tfvae.VAE(tfvae.VAEConfig(input_dim=64, latent_dim=2, decoder="fixed_variance",
                                  fixed_variance=0.1, hidden_units=(16,)))
xg = grey.x_test[:5]
pg = fixed.decode(np.zeros((5, 2), np.float32))
sq = ((xg - pg.mean().numpy()) ** 2).sum(axis=1)
expected = -sq / (2 * 0.1) - 0.5 * 64 * np.log(2 * np.pi * 0.1)
print("Gaussian log p(x|z) == -||x - mean||^2 / (2 sigma^2) + const:",
      np.allclose(pg.log_prob(xg).numpy(), expected, rtol=1e-4))
"""),
    md("""
## The learned variance

The Gaussian decoder also says how sure it is about each pixel: its standard deviation.
"""),
    code("""
px = gaussian.decode(z)
stddev = px.stddev().numpy()
print("decoder stddev per pixel: min %.3f, median %.3f, max %.3f"
      % (stddev.min(), np.median(stddev), stddev.max()))
plots.image_grid([px.mean().numpy(), stddev / stddev.max()], grey.image_shape,
                 row_labels=["mean", "stddev (scaled)"], title="Gaussian decoder, 3 latents")
"""),
]

FREY = [
    md("""
# Frey Face with a Gaussian decoder (Kingma & Welling 2013, App. C.2)

1965 grey faces of 28x20 pixels: continuous data, so p(x|z) is a Gaussian whose mean *and*
variance are learned. The data is read from `$TFVAE_DATA_DIR` (`frey/frey_rawface.mat`);
nothing is downloaded.
"""),
    code(
        SETUP
        + """
from tfvae.data.datasets import load_frey_face

DATA_DIR = os.environ.get("TFVAE_DATA_DIR")
if not DATA_DIR or not os.path.isdir(DATA_DIR):
    raise FileNotFoundError(
        "this notebook needs the Frey Face file: set TFVAE_DATA_DIR to the directory holding "
        "frey/frey_rawface.mat (see README, Data)")
data = load_frey_face(DATA_DIR)
EPOCHS = 3 if SMALL else 100
print(data.x_train.shape, data.x_test.shape, "pixels in", data.x_train.min(), data.x_train.max())
"""
    ),
    code("""
config = tfvae.VAEConfig(input_dim=data.input_dim, latent_dim=2, decoder="gaussian",
                         hidden_units=(200,), image_shape=data.image_shape)
train_config = tfvae.TrainConfig(epochs=EPOCHS, batch_size=100, learning_rate=1e-3,
                                 eval_samples=10 if SMALL else 200)
model, history, metrics = tfvae.train_and_evaluate(
    config, train_config, data, os.path.join(WORKDIR, "frey"), verbose=0)
print(f"test ELBO {metrics['elbo']:.1f}, log p(x) >= {metrics['log_likelihood']:.1f} nats/face")
plots.training_curves(history)
"""),
    md("""
Continuous densities can be positive in log space: log p(x) in nats per face is large and
positive once the variances are small. The soft bound on the log-variance
(`min_log_var`, default -8) keeps it finite.
"""),
    code("""
plots.reconstructions(data.x_test[:8], model.decode(model.encode(data.x_test[:8]).mean())
                      .mean().numpy(), data.image_shape)
"""),
    code("""
n = 5 if SMALL else 10
decoded = model.decode(plots.manifold_latents(n)).mean().numpy()
plots.manifold(decoded, data.image_shape, n, title="Frey Face manifold (cf. Fig. 4b)")
"""),
    md("""
## The learned variance

Each pixel gets its own variance, per z. Where faces vary (eyes, mouth) the decoder is
less sure; the log-variances stay inside the soft bounds.
"""),
    code("""
z = model.prior.sample(4, seed=[0, 0])
px = model.decode(z)
log_var = np.log(px.variance().numpy())
print(f"log-variance: min {log_var.min():.2f}, mean {log_var.mean():.2f}, max "
      f"{log_var.max():.2f} (bounds {config.min_log_var}, {config.max_log_var})")
assert config.min_log_var < log_var.min() and log_var.max() < config.max_log_var
std = px.stddev().numpy()
plots.image_grid([px.mean().numpy(), std / std.max(), px.sample(seed=[0, 1]).numpy()],
                 data.image_shape, row_labels=["mean", "stddev", "x ~ p(x|z)"])
"""),
]

SERVING = [
    md("""
# Serving: export, inspect the signatures, send a REST request

TF Serving loads `<base>/<name>/<version>/saved_model.pb` and answers
`POST /v1/models/<name>:predict` with a JSON body `{"signature_name": ..., "instances":
[...]}` (row format) or `{"inputs": ...}` (columnar). Here we export a small model, look
at what it offers, and answer such a request in-process the way the server would.
"""),
    code(
        SETUP
        + """
import json

from tfvae.data.datasets import load_default
from tfvae.serving.export import export, load_exported
from tfvae.serving.client import parse_rest_response, rest_body, rest_url

data = load_default()
model = tfvae.VAE(tfvae.VAEConfig(input_dim=64, latent_dim=2, hidden_units=(64,),
                                  image_shape=data.image_shape))
model.compile()
model.fit(data.x_train, epochs=2 if SMALL else 30, batch_size=100, verbose=0)
path = export(model, os.path.join(WORKDIR, "saved_models", "digits"))
print(path, sorted(os.listdir(path)))
"""
    ),
    md("## The signatures (what `saved_model_cli show --all` prints)"),
    code("""
exported = load_exported(path)  # plain TensorFlow: no tfvae or TFP code needed to call it
for name, fn in sorted(exported.signatures.items()):
    spec = fn.structured_input_signature[1]
    inputs = {k: (v.dtype.name, str(v.shape)) for k, v in spec.items()}
    outputs = {k: (v.dtype.name, str(v.shape)) for k, v in fn.structured_outputs.items()}
    print(f"{name}\\n  inputs  {inputs}\\n  outputs {outputs}")
"""),
    md("""
## A REST request, answered as TF Serving would

Row format: one JSON object per example. The server stacks the instances into batched
tensors, runs the signature, and answers `{"predictions": [...]}`, one entry per example.
"""),
    code("""
body = rest_body("serving_default", x=data.x_test[:3])
print("POST", rest_url("digits"))
print(json.dumps(body)[:150], "...")


def answer(body, exported):
    \"\"\"What the model server does with a row-format predict request.\"\"\"
    request = json.loads(json.dumps(body))  # exactly what went over the wire
    rows = request["instances"]
    batch = {k: np.asarray([row[k] for row in rows]) for k in rows[0]}
    outputs = exported[request.get("signature_name", "serving_default")](**batch)
    return {"predictions": [{k: np.asarray(v)[i].tolist() for k, v in outputs.items()}
                            for i in range(len(rows))]}


reply = parse_rest_response(json.dumps(answer(body, exported)))
print({k: v.shape for k, v in reply.items()})
"""),
    md("""
The served encoder gives the same E[q(z|x)] as the library's own, from the export alone.
"""),
    code("""
reply = parse_rest_response(answer(rest_body("encode", x=data.x_test[:3], seed=0), exported))
z_mean = model.encode(data.x_test[:3]).mean().numpy()
matches = [k for k, v in reply.items() if v.shape == z_mean.shape
           and np.allclose(v, z_mean, atol=1e-5)]
print("served outputs equal to E[q(z|x)] from the library:", matches)
assert matches
"""),
]


def main(out_dir: str = NOTEBOOKS) -> None:
    os.makedirs(out_dir, exist_ok=True)
    for name, cells in (
        ("quickstart", QUICKSTART),
        ("decoder_is_a_distribution", DECODER),
        ("frey_face_gaussian_decoder", FREY),
        ("serving", SERVING),
    ):
        for i, cell in enumerate(cells):
            cell.id = f"cell-{i}"  # stable ids: regenerating gives the same files
        nb = new_notebook(
            cells=cells,
            metadata={
                "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                "language_info": {"name": "python"},
            },
        )
        nbformat.validate(nb)
        path = os.path.join(out_dir, f"{name}.ipynb")
        nbformat.write(nb, path)
        print("wrote", path)


if __name__ == "__main__":
    import sys

    main(*sys.argv[1:2])
