"""Model cards (README.md) of what training writes: a fine-tuned directory's and a distilled student's."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from albert.tasks.registry import TASKS, get_kind
from albert.train.provenance import code_commit
from albert.version import __version__


def card_inputs(settings: Any) -> dict[str, Any]:
    """The settings a fine-tuning command names (the rest are --key value, listed only where they differ)."""
    return {"task": settings.task, "train": settings.train, "dev": settings.dev or None, "model": settings.model,
            "out": settings.out}


def write_finetune_card(out: Path, settings: Any, defaults: Any, head: str, labels: list[str],
                        scores: dict[str, float] | None, n_train: int, n_dev: int) -> None:
    """README.md of a fine-tuned directory: what the model is for, its labels, data, dev scores, the command that
    rebuilds it (`defaults`: the settings that command would have without its --key value), the code."""
    kind = get_kind(settings.task)
    name = Path(settings.out).name  # (`out` is where the card is written: the output's staging directory)
    given = card_inputs(settings)
    changed = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)
               if f.name not in given and f.name not in ("run_dir", "progress", "epochs", "eval_every", "save_every")
               and (f.name == "max_steps" or getattr(settings, f.name) != getattr(defaults, f.name))}
    command = " ".join(["albert finetune", *(f"--{k} {v}" for k, v in given.items() if v),
                        *(f"--{k} {json.dumps(v) if not isinstance(v, str) else v}" for k, v in changed.items())])
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in (scores or {}).items())
    card = f"""---
library_name: albert
pipeline_tag: {kind.task}
base_model: {settings.model}
tags: [albert, {settings.task}]
---

# {name}

ALBERT fine-tuned for **{settings.task}** ({kind.help}) from `{settings.model}`; it answers the `{kind.task}`
task (`albert {TASKS[kind.task].command} --model {name}`, or `albert.pipeline("{kind.task}", model=...)`), and
transformers loads it as `{head}`.

| | |
|---|---|
| labels | {", ".join(labels) if labels else "—"} |
| training data | `{settings.train}` ({n_train:,} examples) |
| dev data | {f"`{settings.dev}` ({n_dev:,} examples)" if settings.dev else "—"} |
| steps | {settings.max_steps:,} × batch {settings.batch_size}, learning rate {settings.learning_rate:g} |
| max sequence length | {settings.max_seq_length} |
| code | albert {__version__}, commit {code_commit() or "unknown (not run from a checkout)"} |

## Dev scores

{f"| metric | value |{chr(10)}|---|---|{chr(10)}{rows}" if rows else "No dev set was given."}

## Command

```bash
{command}
```

Training state (checkpoints, metrics.jsonl, the resolved settings.yaml) is in `{settings.run_dir}`.
"""
    (out / "README.md").write_text(card, encoding="utf-8")


def cpu_hours(run_dir: Path) -> float:
    """CPU hours the run's steps took, over all its sessions: each step's seconds × the threads it ran on."""
    metrics = run_dir / "metrics.jsonl"
    seconds = sum(r.get("seconds", 0.0) for r in map(json.loads, metrics.read_text().splitlines())
                  if r.get("kind") != "eval") if metrics.is_file() else 0.0
    return seconds * torch.get_num_threads() / 3600


def _distill_loss(settings: Any) -> str:
    """The distillation's loss, as its settings make it."""
    if settings.kind != "sentence-vectors":
        return (f"{settings.soft.kd_weight} × the teacher's soft targets (T = {settings.soft.kd_temperature}) + "
                f"{1 - settings.soft.kd_weight:.2g} × the true labels")
    terms = ["MSE to the teacher's vectors"]
    if settings.vectors.similarity_weight:
        terms.append(f"{settings.vectors.similarity_weight} × in-batch similarity (T = {settings.vectors.temperature})")
    if settings.vectors.relation_weight:
        terms.append(f"{settings.vectors.relation_weight} × relations (T = {settings.vectors.temperature})")
    batches = ("batches of neighbours by the teacher's vectors" if settings.vectors.neighbour_batches
               else "random batches")
    return f"{' + '.join(terms)}; {batches}"


def write_distill_card(out: Path, settings: Any, teacher_hash: str, about: str, scores: dict[str, float],
                       seconds: float) -> None:
    """README.md of a distilled student: its teacher (path, weights' SHA-256, licence), start, data, steps, compute
    and held-out scores."""
    hours = cpu_hours(Path(settings.run_dir))
    overrides = json.dumps(settings.student_overrides) if settings.student_overrides else "as the start"
    held_out = ", ".join(f"{k.removeprefix('eval_')} {v:.4f}" for k, v in scores.items())
    lines = [
        f"# {Path(settings.out).name}", "",
        f"An ALBERT student distilled ({settings.kind}) from `{Path(settings.teacher).name}` by `albert distill`.", "",
        "| | |", "|---|---|",
        f"| teacher | `{settings.teacher}` (weights SHA-256 `{teacher_hash}`) |",
        f"| teacher licence | {settings.teacher_licence or 'not given'} |",
        f"| student start | `{settings.student}` |",
        f"| data | {', '.join(f'`{d}`' for d in settings.data)}: {about} |",
        f"| student config | {overrides} |",
        f"| loss | {_distill_loss(settings)} |",
        f"| steps | {settings.max_steps:,} × {settings.batch_size}, lr {settings.learning_rate} |",
        f"| compute | {hours:.2f} CPU hours of training steps ({seconds / 3600:.2f} h this session's wall clock) |",
        f"| held-out | {held_out} |", "",
    ]
    (out / "README.md").write_text("\n".join(lines))

