"""Where a run's steps came from: one line per start or resume in RUN_DIR/sessions.jsonl (the code's commit, torch,
device, processes), for model cards; a resumed run may have moved machines."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

SESSIONS = "sessions.jsonl"


def code_commit() -> str | None:
    """The git commit of the albert source that runs, "+dirty" when src/ has uncommitted changes (results, docs
    and the embedded models do not count); None outside a checkout (an installed wheel: albert.__version__)."""
    import subprocess

    root = Path(__file__).resolve().parents[3]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", "src",
                                ":!src/albert/models"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + ("+dirty" if dirty else "")) or None


def record_session(run_dir: Path, start: int, device: torch.device, world: int) -> None:
    """One line per start or resume: which code, torch and device ran the steps from `start` (provenance for
    model cards; a resumed run may have moved machines)."""
    from albert.version import __version__

    row = {"step": start, "albert": __version__, "commit": code_commit(), "torch": torch.__version__,
           "device": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
           "processes": world, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with open(run_dir / SESSIONS, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
