"""`refinery eval`: checkpoints evaluated beside training, decomposed into small trials."""
