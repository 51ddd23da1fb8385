"""Device names as users write them ("auto", "cpu", "cuda", "cuda:1") → torch devices, checked in one place."""

from __future__ import annotations

import torch

from albert.config import ConfigError


def resolve_device(name: str, index: int | None = None) -> torch.device:
    """auto: the GPU where there is one, else the CPU; `index`: the GPU of this process (torchrun's local rank)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r} (auto, cpu, cuda or cuda:N)") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {name!r} is not supported (auto, cpu, cuda or cuda:N)")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name} requested but no CUDA device is available")
        if index is not None and device.index is None:
            device = torch.device("cuda", index)
        if (device.index or 0) >= torch.cuda.device_count():
            raise ConfigError(f"device {device} does not exist ({torch.cuda.device_count()} CUDA device(s))")
    return device
