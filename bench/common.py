"""Helpers the benchmarks share."""

from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_mb() -> int:
    """This process's peak resident memory. VmHWM starts afresh at exec; ru_maxrss does not (Linux keeps the
    larger of the parent's at fork and the child's own), so a child started by a big parent would report the
    parent's size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
