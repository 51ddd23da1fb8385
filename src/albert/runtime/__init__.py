"""Running a model fast: the precision policy, compiled graphs, frozen and quantized weights, the CPU kernels."""

from typing import Any


def __getattr__(name: str) -> Any:
    """`albert.runtime` was one module before the package became one folder per layer: its names still resolve, to
    albert.runtime.policy's, with a DeprecationWarning, for one release (CHANGELOG.md)."""
    import importlib
    import warnings

    policy = importlib.import_module("albert.runtime.policy")
    if name.startswith("__") or not hasattr(policy, name):
        raise AttributeError(f"module 'albert.runtime' has no attribute {name!r}")
    warnings.warn(f"albert.runtime.{name} moved to albert.runtime.policy.{name}; the old path goes in the next "
                  "release", DeprecationWarning, stacklevel=2)
    return getattr(policy, name)
