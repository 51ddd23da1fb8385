"""The model: config, backbone, early exit, heads, loading and saving."""
