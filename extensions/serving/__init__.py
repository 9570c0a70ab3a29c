"""Serving: TensorFlow-Serving-compatible REST endpoints for exported models."""
