"""The training side: train_and_evaluate, checkpoints, run directories, logs."""
