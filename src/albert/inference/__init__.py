"""Inference: pipelines and the fast path."""
