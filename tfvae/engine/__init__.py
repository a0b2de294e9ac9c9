"""The tf_keras engine: fit/evaluate/predict fast paths, strategies, callbacks."""
