"""Training: data pipeline, configuration and the training loop."""
