"""The process's memory: what the C heap holds back. Imports no torch (fill-mask's fast path runs without it)."""

from __future__ import annotations

import functools
import platform


@functools.cache
def _libc_trim() -> object | None:
    """glibc's malloc_trim, where the C library is glibc."""
    if platform.system() != "Linux":
        return None
    import ctypes

    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_free_memory() -> None:
    """Give the C heap's free pages back to the system. A long job's batches come in many shapes, and glibc keeps
    what each shape's tensors freed, scattered, so the resident memory of `albert embed --file` crept up with the
    number of inputs; trimmed after each chunk of inputs it stays near one chunk's need (docs/benchmarks.md)."""
    trim = _libc_trim()
    if trim is not None:
        trim(0)  # type: ignore[operator]

