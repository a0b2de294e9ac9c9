"""The data side: dataset files, downloads, input checks and tf.data pipelines."""
