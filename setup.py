"""tfvae: the VAE of Kingma & Welling (2013) on TensorFlow, tf-keras and TFP."""

from setuptools import find_packages, setup

setup(
    name="tfvae",
    version="0.1.0",
    description="Variational autoencoders whose decoder is a distribution p(x|z): "
                "TensorFlow, Keras 2 (tf-keras) and TensorFlow Probability",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["tfvae", "tfvae.*"]),
    # the embedded 8x8 digits (tfvae.data.load_default) and their licence notice
    package_data={"tfvae": ["_data/digits.npz", "_data/DIGITS_LICENSE.txt"]},
    python_requires=">=3.10,<3.13",
    # A working set, pinned: tf-keras 2.21 needs tensorflow 2.21; tfp.layers need tf-keras.
    install_requires=[
        "tensorflow==2.21.0",
        "tf-keras==2.21.0",
        "tensorflow-probability==0.25.0",
        "numpy>=1.26,<3",
        "scipy>=1.11,<2",
        "matplotlib>=3.8,<4",
        "tensorflow-serving-api==2.21.0",
        "tensorboard==2.21.0",  # the CLI's TensorBoard logs (tf.summary needs it)
    ],
    extras_require={
        "test": [
            "pytest==9.0.3",
            "hypothesis==6.155.2",
            "nbclient==0.11.0",
            "nbformat==5.11.1",
            "ipykernel==7.4.0",
            "ruff==0.17.6",
            "pytest-xdist==3.8.0",
        ],
        # bench/: the PyTorch reference VAE (CPU build).
        "bench": ["torch==2.13.0"],
    },
    entry_points={"console_scripts": ["tfvae=tfvae.cli:main"]},
)
