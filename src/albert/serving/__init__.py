"""The ASGI server: settings, limits, micro-batching, routes."""
