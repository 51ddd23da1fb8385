"""A training run's checkpoints: RUN_DIR/checkpoints/step_N, each the weights (model.safetensors) and the trainer's
state (trainer.pt: step, optimizer, schedule, the task's data position), written atomically, pruned to the newest
few, tidied after a kill, and refused when they hold anything but tensors and numbers."""

from __future__ import annotations

import logging
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from albert.errors import TrainingError

logger = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    root = run_dir / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_") and
                  not p.name.endswith(".tmp") and (p / "trainer.pt").is_file())


def tidy_checkpoints(run_dir: Path) -> None:
    """Before a resume: what a kill while saving or while removing old checkpoints left behind goes. A complete
    step_N.tmp whose step_N is gone (killed between the two renames) is put in place; incomplete ones go."""
    root = run_dir / CHECKPOINTS
    if not root.is_dir():
        return
    complete = {"model.safetensors", "trainer.pt"}
    for p in sorted(root.iterdir()):
        if not p.is_dir() or not p.name.startswith("step_"):
            continue
        holds = {f.name for f in p.iterdir()}
        if p.name.endswith(".tmp"):
            final = root / p.name.removesuffix(".tmp")
            if holds >= complete and not (final / "trainer.pt").is_file():
                shutil.rmtree(final, ignore_errors=True)
                os.replace(p, final)
                logger.warning("%s: completed the interrupted save of %s", run_dir, final.name)
                continue
        elif holds >= complete:
            continue
        shutil.rmtree(p, ignore_errors=True)
        logger.warning("%s: removed %s, left incomplete by an interrupted run", run_dir, p.name)


def save_checkpoint(run_dir: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, data_state: dict, keep: int) -> Path:
    """Write into step_N.tmp, then rename: a crash while saving never spoils the last good checkpoint."""
    root = run_dir / CHECKPOINTS
    final = root / f"step_{step:08d}"
    tmp = root / (final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state = {k: v.detach().contiguous().cpu() for k, v in unwrap(model).state_dict().items()}
    # tied aliases (decoder weight = word embeddings) are stored once
    save_file(_dedupe(state), str(tmp / "model.safetensors"))
    torch.save({"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "data": data_state}, tmp / "trainer.pt")
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in checkpoint_dirs(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _dedupe(state: dict[str, Tensor]) -> dict[str, Tensor]:
    seen: dict[int, str] = {}
    out = {}
    for k, v in state.items():
        ptr = v.data_ptr()
        if ptr in seen and v.numel():
            continue
        seen[ptr] = k
        out[k] = v
    return out


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any) -> tuple[int, dict]:
    try:
        weights = load_file(str(path / "model.safetensors"))
        trainer = torch.load(path / "trainer.pt", map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # weights_only refused it: it holds objects, which could run code when loaded
        raise TrainingError(f"checkpoint {path / 'trainer.pt'} holds objects other than tensors and numbers; albert "
                            "does not load such files (it was not written by albert)") from None
    except (OSError, RuntimeError, EOFError, SafetensorError) as e:
        earlier = [c for c in checkpoint_dirs(path.parent.parent) if c.name < path.name]
        hint = f"; move it away to resume from {earlier[-1].name}" if earlier else ""
        raise TrainingError(f"checkpoint {path} is unreadable ({str(e).splitlines()[0][:120]}){hint}") from None
    if not isinstance(trainer, dict) or not {"step", "optimizer", "scheduler", "data"} <= set(trainer) \
            or not isinstance(trainer["step"], int):
        raise TrainingError(f"checkpoint {path / 'trainer.pt'} is not a training state written by albert")
    target = unwrap(model)
    missing, unexpected = target.load_state_dict(weights, strict=False)
    tied = set(getattr(target, "tied_keys", ()))
    if [k for k in missing if k not in tied] or unexpected:
        raise TrainingError(f"checkpoint {path} does not fit the model (missing {missing}, unexpected {unexpected})")
    tie = getattr(target, "tie_weights", None)
    if callable(tie):
        tie()
    optimizer.load_state_dict(trainer["optimizer"])
    scheduler.load_state_dict(trainer["scheduler"])
    return int(trainer["step"]), trainer["data"]


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
