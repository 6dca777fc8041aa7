"""Datasets: Ray Data generation, Arrow schema, manifests and readers."""
