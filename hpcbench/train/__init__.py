"""Training: trainers on one skeleton, the Tune trainable and sweep, the translate stage.

Modules: :mod:`~hpcbench.train.trainer` (seeded streams, epochs, checkpoints),
:mod:`~hpcbench.train.segmentation`, :mod:`~hpcbench.train.cyclegan`,
:mod:`~hpcbench.train.data`, :mod:`~hpcbench.train.losses`,
:mod:`~hpcbench.train.trainable` (one Tune trial), :mod:`~hpcbench.train.tracker`
(MLflow runs, written by the driver), :mod:`~hpcbench.train.sweep`,
:mod:`~hpcbench.train.translate`. Trials come typed from :mod:`hpcbench.plan`.
Submodules import torch and Ray when imported; this package module imports nothing
heavy, so ``hpcbench --help`` stays instant.
"""
