"""The server's Prometheus series (GET /metrics): requests and latency per route, batch sizes, queue, early exit's
passes."""

from __future__ import annotations

from typing import Any


class Metrics:
    """Prometheus series of one app (its own registry: several apps in one process do not collide)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("albert_requests", "HTTP requests answered", ["route", "status"],
                                registry=self.registry)
        self.latency = Histogram("albert_request_seconds", "time from request to answer", ["route"],
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
                                 registry=self.registry)
        self.batch_inputs = Histogram("albert_batch_inputs", "inputs per model call",
                                      buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=self.registry)
        self.batch_tokens = Histogram("albert_batch_tokens", "tokens per model call",
                                      buckets=(16, 64, 256, 1024, 4096, 16384, 65536), registry=self.registry)
        self.queue = Gauge("albert_queue_inputs", "inputs waiting for a model call", registry=self.registry)
        self.tokens = Counter("albert_tokens", "tokens put through the model", registry=self.registry)
        self.inputs = Counter("albert_inputs", "inputs answered", registry=self.registry)
        self.passes = Histogram("albert_exit_passes", "passes of the shared layer each input ran, where it may exit "
                                "early (patience or exit_threshold)", buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 48),
                                registry=self.registry)

    def exits(self, results: list[Any]) -> None:
        """Count the passes each answer says it ran (early exit); answers that say none are not counted."""
        for result in results:
            first = result[0] if isinstance(result, list) and result else result
            if isinstance(first, dict) and "passes" in first:
                self.passes.observe(first["passes"])

    def batch(self, inputs: int, tokens: int) -> None:
        self.batch_inputs.observe(inputs)
        self.batch_tokens.observe(tokens)
        self.tokens.inc(tokens)
        self.inputs.inc(inputs)
