"""The one training loop, shared by pretraining and every fine-tuning task.

A task is a small object (see `TrainTask`): it yields this process's micro-batches for a step,
computes a loss normalised over the whole step, and evaluates. The loop owns everything else:
precision, accumulation, clipping, the optimizer and schedule, NaN guards, metrics, progress,
atomic checkpoints and exact resume, and DistributedDataParallel.

Exact resume: dropout is seeded from (seed, step, rank) at every step and the task's data position is
checkpointed, so a resumed run repeats the uninterrupted run's steps bit for bit.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm import tqdm

from albert.errors import TrainingError
from albert.runtime.policy import resolve_device, resolve_precision
from albert.train.checkpoints import (
    CHECKPOINTS,
    checkpoint_dirs,
    load_checkpoint,
    save_checkpoint,
    tidy_checkpoints,
    unwrap,
)
from albert.train.loggers import MetricsLog
from albert.train.optim import build_optimizer, lr_lambda
from albert.train.provenance import record_session
from albert.train.settings import TrainSettings, flat_settings, read_settings_file, save_settings

logger = logging.getLogger(__name__)

# Settings that may change between an interrupted run and its resumption without changing its results.
# (precision may change too, with a warning: see run_precision.)
RESUMABLE_CHANGES = {"logger", "log_every", "eval_every", "save_every", "keep_checkpoints", "progress", "num_threads",
                     "run_dir", "stop_after", "precision", "compile",
                     "time_budget_minutes"}



class TrainTask(Protocol):
    def step_batches(self, step: int, rank: int, world: int, micro_batch: int) -> list[dict[str, Tensor]]:
        """This process's micro-batches of optimizer step `step` (consumes the step's data)."""
        ...

    def normalizers(self, batches: list[dict[str, Tensor]]) -> Tensor:
        """This process's counts to normalise the step's loss by (summed over processes by the loop)."""
        ...

    def loss(self, model: nn.Module, batch: dict[str, Tensor], norm: Tensor) -> tuple[Tensor, Tensor]:
        """(loss for backward, stats vector of sums) for one micro-batch."""
        ...

    stat_names: list[str]

    def summarize(self, stats: dict[str, float]) -> dict[str, float]:
        ...

    def evaluate(self, model: nn.Module, device: torch.device, dtype: torch.dtype | None) -> dict[str, float]:
        ...

    def data_state(self) -> dict[str, Any]:
        ...

    def load_data_state(self, state: dict[str, Any]) -> None:
        ...


class EpochOrder:
    """A task's rows drawn in a seeded order, epoch after epoch (each epoch reshuffled), split into each process's
    micro-batches; its position is checkpointed, so a resumed run draws what the uninterrupted one did. With
    `blocks` (lists of rows), the blocks are shuffled and each is drawn whole, in its order: a block of a batch's
    size is a batch."""

    def __init__(self, rows: int, seed: int, salt: int, blocks: list[list[int]] | None = None) -> None:
        self.rows, self.seed, self.salt, self.blocks = rows, seed, salt, blocks
        self.epoch, self.index = 0, 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch, self.salt])
        if self.blocks is None:
            return rng.permutation(self.rows)
        return np.array([row for b in rng.permutation(len(self.blocks)) for row in self.blocks[b]], dtype=np.int64)

    def micro_batches(self, batch_size: int, rank: int, world: int, micro_batch: int) -> list[list[int]]:
        """The next batch's rows, as this process's micro-batches (the same rows whatever the process layout)."""
        chosen: list[int] = []
        while len(chosen) < batch_size:
            if self.index >= len(self._order):
                self.epoch, self.index = self.epoch + 1, 0
                self._order = self._permutation(self.epoch)
            take = min(batch_size - len(chosen), len(self._order) - self.index)
            chosen.extend(self._order[self.index:self.index + take].tolist())
            self.index += take
        starts = [(m * world + rank) * micro_batch for m in range(batch_size // (micro_batch * world))]
        return [chosen[lo:lo + micro_batch] for lo in starts]

    def state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "index": self.index}

    def load_state(self, state: dict[str, Any]) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
        self._order = self._permutation(self.epoch)


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def setup_distributed(device_type: str) -> Dist:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK: then join the group (gloo on CPU, nccl on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _saved_settings(run_dir: Path) -> dict[str, Any]:
    """The settings a run recorded (run_dir/settings.yaml), read as any settings file is: a file that is not one
    albert wrote is one line, never a traceback."""
    saved_path = run_dir / "settings.yaml"
    return read_settings_file(saved_path) if saved_path.is_file() else {}


def run_precision(settings: TrainSettings, device: torch.device, run_dir: Path, resume: bool
                  ) -> Literal["bf16", "fp32"]:
    """bf16 or fp32 for this run. 'auto' picks by device (bf16 matrix units or not), except that a resumed run
    keeps the precision it used, so it continues exactly. Switching on resume (a bf16 run moved to a CPU
    without bf16 units, say) is allowed, with a warning that the curve is then no longer bit-identical."""

    saved = _saved_settings(run_dir).get("precision") if resume else None
    chosen = resolve_precision(saved if settings.precision == "auto" and saved in ("bf16", "fp32")
                               else settings.precision, device)
    if saved in ("bf16", "fp32") and saved != chosen:
        logger.warning("resuming a run that computed in %s in %s: it continues, but not bit-identically", saved,
                       chosen)
    return "bf16" if chosen == "bf16" else "fp32"


def check_resumable(run_dir: Path, settings: TrainSettings) -> None:
    """A resumed run must use the settings it started with (apart from logging and saving cadence)."""
    saved = flat_settings(type(settings), _saved_settings(run_dir))  # (a run saved before groups: already flat)
    if not saved:
        return
    from dataclasses import asdict

    now = flat_settings(type(settings), asdict(settings))
    changed = sorted(k for k in now if k in saved and saved[k] != now[k] and k not in RESUMABLE_CHANGES)
    if changed:
        details = ", ".join(f"{k}: {saved[k]!r} → {now[k]!r}" for k in changed)
        raise TrainingError(f"cannot resume {run_dir} with different settings ({details})")


# ----- the loop -----
@dataclass
class Cadence:
    """When the loop evaluates and saves: every `every` steps and at the run's last step (0: never)."""

    every: int

    def due(self, step: int, last: bool) -> bool:
        return bool(self.every) and (step % self.every == 0 or last)


class TimeBudget:
    """Cramming's wall-clock budget: the schedule runs at whichever of steps and time is further along, and the run
    ends (evaluated and saved) once the budget is spent. The clock starts after the first step (compilation)."""

    def __init__(self, minutes: float, max_steps: int) -> None:
        self.seconds, self.max_steps = minutes * 60, max_steps
        self.started = time.perf_counter()

    def schedule_step(self, step: int, start: int) -> tuple[int, bool]:
        """(the step whose rate this step takes, whether the budget is spent)."""
        if step == start:
            self.started = time.perf_counter()
        used = time.perf_counter() - self.started
        return min(self.max_steps, max(step, int(used / self.seconds * self.max_steps))), used >= self.seconds


def _prepare_run(settings: TrainSettings, model: nn.Module, task: TrainTask, resume: bool, d: Dist,
                 device: torch.device) -> tuple[torch.optim.Optimizer, Any, int]:
    """The optimizer and schedule, from the run's last checkpoint on `resume`; the run directory's settings,
    metrics and session line written. Returns them with the step to start from."""
    run_dir = Path(settings.run_dir)
    model.to(device)
    optimizer = build_optimizer(model, settings.optimizer, settings.learning_rate, settings.weight_decay,
                                (settings.beta1, settings.beta2), settings.eps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(settings.total_warmup, settings.max_steps, settings.decay, settings.decay_power))
    start = 0
    if resume:
        if d.main:
            tidy_checkpoints(run_dir)
        d.barrier()
        checkpoints = checkpoint_dirs(run_dir)
        if not checkpoints:
            raise TrainingError(f"nothing to resume: no checkpoint in {run_dir / CHECKPOINTS}")
        check_resumable(run_dir, settings)
        start, data_state = load_checkpoint(checkpoints[-1], model, optimizer, scheduler)
        task.load_data_state(data_state)
        logger.info("resumed from %s at step %d", checkpoints[-1], start)
    elif d.main:
        # a new run never truncates an earlier run's metrics or replaces its final model
        earlier = [name for name in (CHECKPOINTS, "metrics.jsonl", "final") if (run_dir / name).exists()]
        if earlier:
            hint = "pass --resume to continue it, or " if checkpoint_dirs(run_dir) else ""
            raise TrainingError(f"{run_dir} already holds a run ({', '.join(earlier)}): {hint}choose another "
                                f"run_dir")
    if d.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_settings(settings, run_dir / "settings.yaml")
        _truncate_metrics(run_dir / "metrics.jsonl", start)
        record_session(run_dir, start, device, d.world)
    return optimizer, scheduler, start


def _wrap(settings: TrainSettings, model: nn.Module, d: Dist, device: torch.device) -> nn.Module:
    """The module the step runs: DistributedDataParallel over several processes, under torch.compile if asked."""
    wrapped: nn.Module = model
    if d.world > 1:
        device_ids = [device.index] if device.type == "cuda" else None
        wrapped = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    if settings.compile:
        # Shapes that vary from batch to batch (padding to each batch's longest) make it dynamic after one
        # recompile; packed batches keep one shape. Evaluation and checkpoints use the eager module: same weights.
        wrapped = torch.compile(wrapped)  # type: ignore[assignment]
    return wrapped


def _gradients(settings: TrainSettings, wrapped: nn.Module, model: nn.Module, task: TrainTask, step: int, d: Dist,
               device: torch.device, micro: int, amp_dtype: torch.dtype | None
               ) -> tuple[dict[str, float], Tensor]:
    """One step's forward and backward over its micro-batches (accumulated; DDP syncs on the last): the task's
    summary of the step and the clipped gradient norm."""
    accumulation = settings.batch_size // (micro * d.world)
    wrapped.train()
    torch.manual_seed(hash((settings.seed, step, d.rank)) & 0x7FFF_FFFF)  # dropout: exact on resume
    batches = task.step_batches(step, d.rank, d.world, micro)
    if not 1 <= len(batches) <= accumulation:  # fewer: a batch ramp's early steps
        raise TrainingError(f"task gave {len(batches)} micro-batches, expected 1 to {accumulation}")
    batches = [{k: v.to(device, non_blocking=True) for k, v in b.items()} for b in batches]
    norm = task.normalizers(batches).to(device=device, dtype=torch.float64)
    if d.world > 1:
        dist.all_reduce(norm)
    stats = torch.zeros(len(task.stat_names), dtype=torch.float64, device=device)
    for i, batch in enumerate(batches):
        sync = nullcontext() if (d.world == 1 or i == len(batches) - 1) else wrapped.no_sync()  # type: ignore[operator]
        with sync:
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                loss, s = task.loss(wrapped, batch, norm)
            (loss * d.world).backward()  # DDP averages over processes; the loss is already global
        stats += s.detach().to(torch.float64)
    if d.world > 1:
        dist.all_reduce(stats)
    max_norm = settings.max_grad_norm if settings.max_grad_norm > 0 else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    return task.summarize(dict(zip(task.stat_names, stats.tolist()))), grad_norm


def _record(step: int, summary: dict[str, float], lr: float, grad_norm: Tensor, elapsed: float) -> dict[str, Any]:
    """A step's line of metrics.jsonl."""
    record = {"step": step, **{k: round(v, 6) for k, v in summary.items()}, "lr": lr,
              "grad_norm": round(float(grad_norm), 6), "seconds": round(elapsed, 4)}
    if "tokens" in summary:
        record["tokens_per_s"] = round(summary["tokens"] / max(elapsed, 1e-9), 1)
    if "gflop" in summary:  # model FLOPs per second, for utilisation against the device's peak
        record["gflops"] = round(summary["gflop"] / max(elapsed, 1e-9), 1)
    return record


def _non_finite(policy: str, step: int, summary: dict[str, float], grad_norm: Tensor, skipped: int) -> int:
    """A step with a non-finite loss or gradient: stop the run (the last good checkpoint is kept), or count it as
    skipped."""
    if policy == "stop":
        raise TrainingError(f"non-finite loss or gradient at step {step} (loss {summary.get('loss')}, grad norm "
                            f"{float(grad_norm)}); stopped, the last good checkpoint is kept. Lower the learning "
                            "rate, or set on_nonfinite: skip")
    logger.warning("step %d: non-finite loss or gradient, step skipped (%d so far)", step, skipped + 1)
    return skipped + 1


def train(settings: TrainSettings, model: nn.Module, task: TrainTask, resume: bool = False,
          on_step: Callable[[int], None] | None = None) -> nn.Module:
    """Run the loop to `settings.max_steps` (or `stop_after`); returns the (unwrapped) trained model."""
    threads = torch.get_num_threads()
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    try:
        return _train(settings, model, task, resume, on_step)
    finally:
        torch.set_num_threads(threads)  # a caller's thread count is its own (the loop may run inside a server, a test)


def _train(settings: TrainSettings, model: nn.Module, task: TrainTask, resume: bool,
           on_step: Callable[[int], None] | None) -> nn.Module:
    device_type = "cuda" if settings.device in ("cuda", "auto") and torch.cuda.is_available() else "cpu"
    d = setup_distributed(device_type)
    device = resolve_device(settings.device, d.local_rank)
    run_dir = Path(settings.run_dir)
    micro = settings.micro_batch_size or settings.batch_size // d.world
    if settings.batch_size % (micro * d.world):
        raise TrainingError(f"batch_size {settings.batch_size} is not a multiple of micro_batch_size {micro} × "
                            f"{d.world} process(es)")
    settings = replace(settings, precision=run_precision(settings, device, run_dir, resume))  # recorded resolved
    amp_dtype = torch.bfloat16 if settings.precision == "bf16" else None
    optimizer, scheduler, start = _prepare_run(settings, model, task, resume, d, device)
    wrapped = _wrap(settings, model, d, device)
    run = _Run(settings, model, task, d, device, amp_dtype, optimizer, scheduler,
               MetricsLog(run_dir, settings.logger, start) if d.main else None,
               tqdm(total=settings.max_steps, initial=start, disable=not (settings.progress and d.main), unit="step",
                    dynamic_ncols=True))
    evaluation, saving = Cadence(settings.eval_every), Cadence(settings.save_every)
    budget = TimeBudget(settings.time_budget_minutes, settings.max_steps) if settings.time_budget_minutes else None
    schedule = scheduler.lr_lambdas[0]  # (one function for every group: see lr_lambda above)
    skipped = 0
    last_time = time.perf_counter()
    try:
        end = min(settings.max_steps, settings.stop_after or settings.max_steps)
        for step in range(start, end):
            summary, grad_norm = _gradients(settings, wrapped, model, task, step, d, device, micro, amp_dtype)
            if not (math.isfinite(summary.get("loss", 0.0)) and bool(torch.isfinite(grad_norm))):
                skipped = _non_finite(settings.on_nonfinite, step + 1, summary, grad_norm, skipped)
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                continue
            out_of_time = False
            if budget is not None:  # the rate set for this step from the budget's clock
                at, out_of_time = budget.schedule_step(step, start)
                for group, base in zip(optimizer.param_groups, scheduler.base_lrs):
                    group["lr"] = base * schedule(at)
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            run.record(_record(step + 1, summary, lr, grad_norm, time.perf_counter() - last_time))
            last = step + 1 == end or out_of_time
            if evaluation.due(step + 1, last):
                run.evaluate(step + 1)
            if saving.due(step + 1, last):
                run.save(step + 1)
            if on_step is not None:
                on_step(step + 1)
            last_time = time.perf_counter()
            if out_of_time:
                logger.info("time budget of %s minutes spent at step %d", settings.time_budget_minutes, step + 1)
                break
    finally:
        run.close()
    return model


@dataclass
class _Run:
    """What a run's steps share once they are taken: where each step's record goes (metrics.jsonl, the progress
    bar), and the evaluation and the checkpoint (on the main process; the others wait for it)."""

    settings: TrainSettings
    model: nn.Module
    task: TrainTask
    d: Dist
    device: torch.device
    amp_dtype: torch.dtype | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    metrics_file: MetricsLog | None
    bar: tqdm

    def record(self, record: dict[str, Any]) -> None:
        if self.metrics_file is not None:
            self.metrics_file.write(record)
        if self.d.main and record["step"] % max(1, self.settings.log_every) == 0:
            self.bar.set_postfix({k: f"{record[k]:.4g}" for k in ("loss", "mlm_acc", "sop_acc", "acc", "tokens_per_s")
                                  if k in record}, refresh=False)
        self.bar.update(1)

    def evaluate(self, step: int) -> None:
        if self.d.main:
            scores = self.task.evaluate(unwrap(self.model), self.device, self.amp_dtype)
            result = {"step": step, "kind": "eval", **{k: round(v, 6) for k, v in scores.items()}}
            if self.metrics_file is not None:
                self.metrics_file.write(result)
            logger.info("eval at step %d: %s", step, result)
        self.d.barrier()

    def save(self, step: int) -> None:
        if self.d.main:
            save_checkpoint(Path(self.settings.run_dir), step, self.model, self.optimizer, self.scheduler,
                            self.task.data_state(), self.settings.keep_checkpoints)
        self.d.barrier()

    def close(self) -> None:
        self.bar.close()
        if self.metrics_file is not None:
            self.metrics_file.close()


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop records past the checkpoint (and a torn last line) so the curve has each step once."""
    if not path.is_file():
        return
    from albert.train.plot import read_records

    keep = [r for r in read_records(path) if r["step"] <= step]
    path.write_text("".join(json.dumps(r) + "\n" for r in keep), encoding="utf-8")

