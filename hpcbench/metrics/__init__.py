"""Metrics on images, masks and detections (plain functions)."""
