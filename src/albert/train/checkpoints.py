"""A training run's checkpoints: RUN_DIR/checkpoints/step_N, each the weights (model.safetensors) and the trainer's
state (trainer.pt: step, optimizer, schedule, the task's data position), written atomically, pruned to the newest
few, tidied after a kill, and refused when they hold anything but tensors and numbers."""

from __future__ import annotations

import json
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
COMPLETE = "COMPLETE"  # written last into a checkpoint being saved: the sizes of its files


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    root = run_dir / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_") and
                  not p.name.endswith(".tmp") and (p / "trainer.pt").is_file())


def tidy_checkpoints(run_dir: Path) -> None:
    """Before a resume: what a kill while saving or while removing old checkpoints left behind goes. A step_N.tmp
    whose save finished (its COMPLETE record, written last, names each file at the size it has) but whose step_N is
    gone (killed between the two renames) is put in place; any other .tmp goes, however whole its files look: a
    save cut short (a kill, a full disk) never becomes a checkpoint, and the resume starts from the last whole one."""
    root = run_dir / CHECKPOINTS
    if not root.is_dir():
        return
    for p in sorted(root.iterdir()):
        if not p.is_dir() or not p.name.startswith("step_"):
            continue
        if p.name.endswith(".tmp"):
            final = root / p.name.removesuffix(".tmp")
            if _finished(p) and not (final / "trainer.pt").is_file():
                shutil.rmtree(final, ignore_errors=True)
                os.replace(p, final)
                logger.warning("%s: completed the interrupted save of %s", run_dir, final.name)
                continue
        elif {f.name for f in p.iterdir()} >= {"model.safetensors", "trainer.pt"}:
            continue
        shutil.rmtree(p, ignore_errors=True)
        logger.warning("%s: removed %s, left incomplete by an interrupted run", run_dir, p.name)


def _finished(tmp: Path) -> bool:
    """Whether a save into `tmp` ran to its end: its COMPLETE record exists and every file it names has its size."""
    try:
        sizes = json.loads((tmp / COMPLETE).read_text(encoding="utf-8"))
        return isinstance(sizes, dict) and set(sizes) == {"model.safetensors", "trainer.pt"} and all(
            (tmp / name).stat().st_size == size for name, size in sizes.items())
    except (OSError, ValueError):
        return False


def save_checkpoint(run_dir: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, data_state: dict, keep: int) -> Path:
    """Write into step_N.tmp, record it finished (COMPLETE, last, after every byte is on disk), then rename: a crash
    or a full disk while saving never spoils the last good checkpoint, and never becomes one."""
    root = run_dir / CHECKPOINTS
    final = root / f"step_{step:08d}"
    tmp = root / (final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        state = {k: v.detach().contiguous().cpu() for k, v in unwrap(model).state_dict().items()}
        # tied aliases (decoder weight = word embeddings) are stored once
        save_file(_dedupe(state), str(tmp / "model.safetensors"))
        torch.save({"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "data": data_state}, tmp / "trainer.pt")
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        sizes = {f.name: f.stat().st_size for f in tmp.iterdir()}
        with open(tmp / COMPLETE, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(sizes))
            fh.flush()
            os.fsync(fh.fileno())
    except (OSError, RuntimeError) as e:  # (torch.save reports a short write as a RuntimeError)
        shutil.rmtree(tmp, ignore_errors=True)
        reason = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise TrainingError(f"could not write the checkpoint of step {step} in {root} ({reason}); is the disk "
                            f"full? The checkpoints before it are whole: --resume continues from the last") from None
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
