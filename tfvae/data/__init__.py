"""The data side: dataset files, downloads, input checks and tf.data pipelines."""


def __getattr__(name: str):
    from tfvae import moved_attribute

    raise moved_attribute(__name__, name)
