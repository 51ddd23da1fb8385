"""Subcommands added as the library grows: fine-tuning, inference, export and conversion."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def add_commands(sub: Any, add_runtime_args: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register the remaining subcommands on `sub` (nothing yet)."""
