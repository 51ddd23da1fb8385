"""`albert plot`: a run's training and held-out curves from metrics.jsonl, drawn to a PNG."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from albert.errors import DataError

logger = logging.getLogger(__name__)


def read_metrics(run_dir: Path) -> tuple[list[dict], list[dict]]:
    """(training records, eval records) of a run directory's metrics.jsonl."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise DataError(f"{run_dir}: no metrics.jsonl (is it a run directory?)")
    train: list[dict] = []
    evals: list[dict] = []
    for record in read_records(path):
        (evals if record.get("kind") == "eval" else train).append(record)
    if not train:
        raise DataError(f"{path} holds no training steps yet")
    return train, evals


def read_records(path: Path) -> list[dict]:
    """The records of a metrics.jsonl. A torn last line (the run was killed while writing it) is dropped with a
    warning; any other bad line is a DataError naming it."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines):
                logger.warning("%s:%d: dropped a torn last record (the run was interrupted while writing it)", path,
                               n)
                continue
            raise DataError(f"{path}:{n}: invalid JSON") from None
        numbers = isinstance(record, dict) and all(isinstance(v, (int, float)) for k, v in record.items()
                                                   if k != "kind")
        if not numbers or not isinstance(record.get("step"), int) or isinstance(record.get("step"), bool):
            raise DataError(f"{path}:{n}: not a metrics record (an integer 'step' and numbers)")
        records.append(record)
    return records


def run_stages(run_dir: Path) -> list[tuple[Path, int | None]]:
    """The runs this one grew from, oldest first, each with the step it was continued from (None: to its end).

    A run whose settings say `init_from: OTHER_RUN/checkpoints/step_N` continues OTHER_RUN at step N;
    `init_from: OTHER_RUN/final` continues it from its end.
    """
    from albert.train.settings import read_settings_file

    stages: list[tuple[Path, int | None]] = [(run_dir, None)]
    while True:
        settings_path = stages[0][0] / "settings.yaml"
        settings = read_settings_file(settings_path) if settings_path.is_file() else {}
        init = Path(str((settings or {}).get("init_from") or ""))
        if init.parent.name == "checkpoints":
            parent: Path | None = init.parent.parent
        elif init.name == "final":
            parent = init.parent
        else:
            parent = None
        if parent is None or not (parent / "metrics.jsonl").is_file() or len(stages) > 20:
            return stages
        if init.name == "final":
            upto = max((r["step"] for r in read_metrics(parent)[0]), default=0)
        else:
            upto = int(init.name.removeprefix("step_"))
        stages.insert(0, (parent, upto))


def read_history(run_dir: Path, max_step: int | None = None) -> tuple[list[dict], list[dict], list[int]]:
    """Training and held-out records of a run and the runs it grew from, with steps counted from the first
    run's start; and the step at which each later stage began."""
    train: list[dict] = []
    evals: list[dict] = []
    starts: list[int] = []
    offset = 0
    for path, upto in run_stages(Path(run_dir)):
        t, e = read_metrics(path)
        if upto is not None:
            t, e = [r for r in t if r["step"] <= upto], [r for r in e if r["step"] <= upto]
        if train:
            starts.append(offset)
        train += [{**r, "step": r["step"] + offset} for r in t]
        evals += [{**r, "step": r["step"] + offset} for r in e]
        offset += upto or 0
    if max_step is not None:
        train = [r for r in train if r["step"] <= max_step]
        evals = [r for r in evals if r["step"] <= max_step]
    return train, evals, starts


def _smooth(values: list[float], window: int) -> list[float]:
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def plot_run(run_dir: str | Path, out: str | Path | None = None, max_step: int | None = None) -> Path:
    """Draw the curves of RUN_DIR, preceded by those of the runs it continued (init_from a checkpoint)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise DataError("plotting needs matplotlib (pip install 'albert-lm[plot]')") from None
    run_dir = Path(run_dir)
    train, evals, starts = read_history(run_dir, max_step)
    out_path = Path(out) if out else run_dir / "curves.png"
    steps = [r["step"] for r in train]
    window = max(1, len(steps) // 100)
    first = "mlm_loss" if "mlm_loss" in train[0] else "loss"
    keys = [k for k in (first, "mlm_acc", "sop_acc", "acc", "lr") if all(k in r for r in train)]
    if not keys:
        raise DataError(f"{run_dir}: its training records have none of loss, mlm_loss, mlm_acc, sop_acc, acc, lr")
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.6))
    axes = [axes] if len(keys) == 1 else list(axes)
    for ax, key in zip(axes, keys):
        ax.plot(steps, _smooth([r[key] for r in train], window), label=f"train {key}", lw=1.2)
        eval_key = {"mlm_loss": "eval_mlm_loss", "loss": "eval_loss", "mlm_acc": "eval_mlm_acc",
                    "sop_acc": "eval_sop_acc", "acc": "eval_acc"}.get(key, "")
        points = [(r["step"], r[eval_key]) for r in evals if eval_key in r]
        if points:
            ax.plot(*zip(*points), "o-", label=f"held-out {eval_key.removeprefix('eval_')}", ms=3)
        for start in starts:
            ax.axvline(start, color="grey", ls=":", lw=1)
        ax.set_xlabel("step (dotted: a new stage)" if starts else "step")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path
