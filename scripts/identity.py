"""Fingerprints of training, histories and exports, to prove a refactor changes no number.

Run it before and after a change and compare the two JSON files (`--compare A B`): the
same seeds must give the same bytes. It uses only the public API (`tfvae.*`) and the
`tfvae` command, so it runs unchanged across a reorganisation of the package.

    python3 scripts/identity.py OUT.json            # fingerprint this tree
    python3 scripts/identity.py --compare A.json B.json
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

# (name, VAEConfig fields, TrainConfig fields): every decoder, both architectures, every
# objective and gradient estimator, KL warm-up, dynamic binarization and the output bias
CONFIGS = [
    (
        "mlp_bernoulli_elbo",
        dict(latent_dim=2, hidden_units=(32,), seed=3),
        dict(epochs=3, batch_size=100, kl_warmup_epochs=2, dynamic_binarization=True),
    ),
    (
        "mlp_gaussian_iwae_dreg",
        dict(
            latent_dim=3,
            hidden_units=(24, 16),
            decoder="gaussian",
            objective="iwae",
            num_samples=3,
            gradient_estimator="dreg",
            seed=7,
        ),
        dict(epochs=2, batch_size=64, output_bias_from_data=True),
    ),
    (
        "conv_isotropic_mc",
        dict(
            latent_dim=2,
            hidden_units=(16,),
            decoder="isotropic",
            architecture="conv",
            conv_filters=(4, 8),
            image_shape=(8, 8, 1),
            kl_method="monte_carlo",
            seed=11,
        ),
        dict(epochs=2, batch_size=50, clipnorm=5.0, jit_compile=True),  # XLA: as before 33
    ),
    (
        "mlp_fixed_variance_multi",
        dict(
            latent_dim=2,
            hidden_units=(16,),
            decoder="fixed_variance",
            num_samples=2,
            kl_weight=0.5,
            seed=1,
        ),
        dict(epochs=2, batch_size=128),
    ),
]


# imports tfvae from the tree this script sits in, not from an editable install elsewhere
_USE_TREE = f"""import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path.insert(0, {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))!r})"""
exec(_USE_TREE)


def _digest(array) -> str:
    array = np.ascontiguousarray(np.asarray(array))
    return hashlib.sha256(str(array.dtype).encode() + array.tobytes()).hexdigest()[:16]


def _file_digest(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def _library_run(name, model_kwargs, train_kwargs, root) -> dict:
    import tensorflow as tf

    import tfvae

    data = tfvae.load_dataset("default")
    model_config = tfvae.VAEConfig(input_dim=data.x_train.shape[1], **model_kwargs)
    train_config = tfvae.TrainConfig(eval_samples=20, **train_kwargs)
    workdir = os.path.join(root, name)
    model, history, metrics = tfvae.train_and_evaluate(
        model_config, train_config, data, workdir, verbose=0
    )
    out = {
        "weights": [_digest(w) for w in model.get_weights()],
        "history": {k: [float(v) for v in vs] for k, vs in sorted(history.items())},
        "metrics": {k: v for k, v in sorted(metrics.items()) if isinstance(v, float)},
    }
    x = data.x_test[:16]
    out["elbo_seed1"] = _digest(model.elbo(x, seed=1))
    base = os.path.join(root, name + "_export")
    path = tfvae.export(model, base)
    loaded = tf.saved_model.load(path)
    served = {}
    for key in sorted(loaded.signatures):
        fn = loaded.signatures[key]
        args = {}
        for arg, spec in fn.structured_input_signature[1].items():
            if arg == "x":
                args[arg] = tf.constant(x, spec.dtype)
            elif arg in ("z", "latents"):
                args[arg] = tf.constant(
                    np.linspace(-1, 1, 4 * model_config.latent_dim).reshape(4, -1), spec.dtype
                )
            elif spec.dtype.is_integer:
                args[arg] = tf.constant(3 if arg != "seed" else 5, spec.dtype)
            else:
                args[arg] = tf.constant(0.5, spec.dtype)
        try:
            result = fn(**args)
        except Exception as e:  # a signature whose inputs this guess does not fit
            served[key] = f"error {type(e).__name__}"
            continue
        served[key] = {k: _digest(v.numpy()) for k, v in sorted(result.items())}
    out["served"] = served
    reader = tf.train.load_checkpoint(os.path.join(path, "variables", "variables"))
    out["export_variables"] = {
        k: _digest(reader.get_tensor(k))
        for k in sorted(reader.get_variable_to_shape_map())
        if "OBJECT_GRAPH" not in k
    }
    return out


def _cli_run(root) -> dict:
    out_dir = os.path.join(root, "cli_run")
    argv = ["tfvae", "train", "--out", out_dir, "--epochs", "3", "--quiet", "--seed", "5"]
    code = f"{_USE_TREE}\nimport runpy, sys\nsys.argv = {argv!r}\n"
    code += "runpy.run_module('tfvae', run_name='__main__')"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    import tfvae

    model = tfvae.load_model(os.path.join(out_dir, "model"))
    with open(os.path.join(out_dir, "metrics.json")) as f:
        metrics = json.load(f)
    numbers = {k: v for k, v in sorted(metrics.items()) if isinstance(v, float)}
    return {
        "weights": [_digest(w) for w in model.get_weights()],
        "history_csv": _file_digest(os.path.join(out_dir, "history.csv")),
        "metrics": {k: v for k, v in numbers.items() if "second" not in k and "time" not in k},
    }


def fingerprint() -> dict:
    root = tempfile.mkdtemp(prefix="tfvae-identity-")
    result = {name: _library_run(name, m, t, root) for name, m, t in CONFIGS}
    result["cli_train"] = _cli_run(root)
    return result


def _compare(a_path, b_path) -> int:
    with open(a_path) as f:
        a = json.load(f)
    with open(b_path) as f:
        b = json.load(f)
    differing = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    for key in differing:
        left, right = a.get(key) or {}, b.get(key) or {}
        parts = [p for p in sorted(set(left) | set(right)) if left.get(p) != right.get(p)]
        print(f"{key}: differs in {parts}")
    print("identical" if not differing else f"{len(differing)} of {len(a)} runs differ")
    return 1 if differing else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", help="write the fingerprint JSON here")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"))
    args = parser.parse_args()
    if args.compare:
        return _compare(*args.compare)
    if not args.out:
        parser.error("give OUT.json or --compare A B")
    result = fingerprint()
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    print(f"wrote {args.out}: {len(result)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
