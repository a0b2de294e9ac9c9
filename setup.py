"""tfvae: the VAE of Kingma & Welling (2013) on TensorFlow, tf-keras and TFP."""

from setuptools import find_packages, setup

SERVING = ["tensorflow-serving-api>=2.21,<2.22"]  # its version follows TensorFlow's
# bench/jax_reference.py: the JAX + Flax + optax contestant (the versions it was written and
# tested with); the tests run it on two batches against numpy
PEERS = ["jax>=0.10,<0.11", "jaxlib>=0.10,<0.11", "flax>=0.12,<0.13", "optax>=0.2.8,<0.3"]

setup(
    name="tfvae",
    version="0.1.0",
    description=(
        "Variational autoencoders whose decoder is a distribution p(x|z): "
        "TensorFlow, Keras 2 (tf-keras) and TensorFlow Probability"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["tfvae", "tfvae.*"]),
    # the embedded 8x8 digits (tfvae.data.datasets.load_default) and their licence notice
    package_data={"tfvae.data": ["_data/digits.npz", "_data/DIGITS_LICENSE.txt"]},
    python_requires=">=3.10,<3.13",
    # Ranges of what tfvae imports at run time, not pins, so tfvae installs beside other
    # stacks. TF, tf-keras and TFP move together: tf-keras X.Y needs tensorflow X.Y, and
    # TFP 0.25 is the release for TF 2.21. CI installs the exact versions it tested with
    # `-c constraints.txt` (scripts/test.sh).
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "tf-keras>=2.21,<2.22",
        "tensorflow-probability>=0.25,<0.26",
        "numpy>=1.26,<3",
        "scipy>=1.11,<2",
        "matplotlib>=3.8,<4",
        "tensorboard>=2.21,<3",  # the CLI's TensorBoard logs (tf.summary needs it)
    ],
    extras_require={
        # tfvae.serving.client's gRPC, models.config and warm-up helpers (the REST ones need nothing)
        "serving": SERVING,
        # the tests import the serving protos, run the notebooks and the JAX contestant
        "test": SERVING
        + PEERS
        + [
            "pytest>=9.0,<10",
            "hypothesis>=6.100,<7",
            "nbclient>=0.10,<1",
            "nbformat>=5.10,<6",
            "ipykernel>=6.29,<8",
            "ruff>=0.17,<0.18",  # the style check; its formatting changes between minors
            "pytest-xdist>=3.5,<4",
            "packaging>=23",  # tests/test_packaging.py, scripts/freeze_constraints.py
            "keras>=3.10,<4",  # tests/test_keras3.py builds Keras 3 objects (TF brings it too)
            "scikit-learn>=1.9,<2",  # tests/test_data.py: the embedded digits are sklearn's
        ],
        # bench/: the PyTorch reference VAE (CPU build).
        "bench": ["torch>=2.5,<3"],
        # bench/jax_reference.py's contestant alone (`test` has it too)
        "peers": PEERS,
    },
    entry_points={"console_scripts": ["tfvae=tfvae.cli:main"]},
)
