"""Training: MultiBox loss, LR schedule, BN sparsity, the training loop and `mfssd-train`."""
