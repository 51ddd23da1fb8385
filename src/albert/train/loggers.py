"""Where a run's records go: metrics.jsonl always (`albert plot` and resume read it), TensorBoard on request.

`logger: tensorboard` writes the same scalars as TensorBoard event files under RUN_DIR/tensorboard: training
records as train/NAME, held-out evaluations as eval/NAME, each at its step. A resumed run purges the events
past the checkpoint it resumed from, as it truncates metrics.jsonl, so each curve has every step once.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import TracebackType
from typing import Any

from albert.errors import ConfigError

LOGGERS = ("jsonl", "tensorboard")


def check_logger(logger: str) -> None:
    """A ConfigError for an unknown logger, or for tensorboard without its package (said when the settings are
    read, before any data is)."""
    if logger not in LOGGERS:
        raise ConfigError(f"unknown logger {logger!r} ({', '.join(LOGGERS)})")
    if logger == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("logger tensorboard needs the tensorboard package: pip install 'albert-lm[tensorboard]'")


class MetricsLog:
    def __init__(self, run_dir: Path, logger: str = "jsonl", start: int = 0) -> None:
        check_logger(logger)
        self.file = open(run_dir / "metrics.jsonl", "a", encoding="utf-8")
        self.tensorboard: Any = None
        if logger == "tensorboard":
            self.tensorboard = open_tensorboard(run_dir / "tensorboard", start)

    def write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tensorboard is not None:
            prefix = "eval" if record.get("kind") == "eval" else "train"
            for key, value in record.items():
                if key not in ("step", "kind") and isinstance(value, (int, float)) and math.isfinite(value):
                    self.tensorboard.add_scalar(f"{prefix}/{key}", value, record["step"])
            self.tensorboard.flush()

    def close(self) -> None:
        self.file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
                 ) -> None:
        self.close()


def open_tensorboard(log_dir: Path, start: int) -> Any:
    from torch.utils.tensorboard import SummaryWriter

    # purge_step: events at steps after `start` (written before an interruption) are dropped on resume
    return SummaryWriter(str(log_dir), purge_step=start + 1 if start else None)
