"""Networks, the training loop, and the hyperparameter search."""
