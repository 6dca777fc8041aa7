"""Training: the trial grid, data, losses, the training loop, the Tune trainable and sweep.

Submodules import torch and Ray when imported; this package module imports nothing
heavy, so ``hpcbench --help`` stays instant.
"""
