"""Early exit over the shared layer's passes: a classifier after every pass, and inference that stops a row once
its answer is settled.

ALBERT runs one layer N times, so a classifier after pass i sees the same kind of states as the one after pass N;
easy inputs are answered after a few passes and hard ones after all of them. Two rules decide when a row stops, and
either may be used alone or both together (a row stops when either says so):
- patience (PABEE, Zhou et al. 2020): the row's prediction has stayed the same for `patience` passes after the one
  that first gave it (a regression's value within REGRESSION_AGREEMENT). Patience p stops at pass p + 1 at the
  earliest; with p ≥ N - 1 no row stops early and the answer is the full-depth model's.
- entropy (DeeBERT, Xin et al. 2020): the entropy of the pass's class distribution (nats) is below `threshold`.
  Not for regression, which has no distribution.
Rows that stop leave the batch, and the batch is trimmed to its longest remaining row, so a batch keeps the gain
that PABEE's own code has only at batch size 1.

Training (`albert finetune --early_exit true`) is PABEE's: the loss is the mean of every pass's loss weighted by
the pass's number (later passes count more), so the last classifier still learns most. The classifier after
every pass is either the model's one classifier (`shared`, the layer being shared too) or one per pass
(`per_pass`; the last is the model's own `classifier`, so transformers still loads the full-depth model).
Which measured better: docs/early-exit.md.

Pure torch, as the model code: the runtime decides precision and compilation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from albert.errors import InputError

EXIT_KINDS = ("shared", "per_pass")
# two regression outputs of successive passes "agree" when this close (in the label's units)
REGRESSION_AGREEMENT = 0.1


@dataclass(frozen=True)
class ExitPolicy:
    """When a row stops: `patience` passes of the same prediction (0: never by patience), or the class
    distribution's entropy below `threshold` (0: never by entropy)."""

    patience: int = 0
    threshold: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) or self.patience < 0:
            raise InputError(f"patience must be a whole number >= 0, got {self.patience!r}")
        if not isinstance(self.threshold, (int, float)) or isinstance(self.threshold, bool) \
                or not math.isfinite(self.threshold) or self.threshold < 0:
            raise InputError(f"exit_threshold must be a finite number >= 0, got {self.threshold!r}")

    @property
    def active(self) -> bool:
        return self.patience > 0 or self.threshold > 0

    def earliest_stop(self, passes: int) -> int:
        """The number of passes every row runs before this policy can stop one: by patience alone p + 1 (the first
        prediction, then p that agree with it), with an entropy threshold 1."""
        return min(passes, 1 if self.threshold > 0 else self.patience + 1)


NO_EXITS = ("patience and exit_threshold need a model fine-tuned with --early_exit true; this one has a classifier "
            "after its last pass only")


def require_exits(config: Any) -> None:
    """An InputError unless the model's config has a classifier after every pass (config.early_exit)."""
    if not getattr(config, "early_exit", None):
        raise InputError(NO_EXITS)


def pass_weights(n: int) -> list[float]:
    """PABEE's loss weights: pass i (1-based) counts i / (1 + ... + n)."""
    total = n * (n + 1) / 2
    return [i / total for i in range(1, n + 1)]


def pabee_loss(exit_logits: Tensor | None, logits: Tensor, loss: Callable[[Tensor], Tensor]) -> Tensor:
    """`loss` of `logits`; with every pass's logits (a model training with early exit), PABEE's pass-weighted mean
    of each pass's loss instead."""
    if exit_logits is None:
        return loss(logits)
    return sum((w * loss(z) for w, z in zip(pass_weights(len(exit_logits)), exit_logits)),
               torch.zeros((), device=exit_logits.device))


@dataclass
class _Streaks:
    """Per row: the last pass's prediction and how many passes in a row have agreed with it. Plain Python over each
    pass's logits as numbers: a few per row, where a tensor op per rule per pass cost more than the pass's
    classifier at batch 1."""

    previous: list[float] | None = None
    agreed: list[int] | None = None

    def update(self, logits: list[list[float]], regression: bool) -> list[int]:
        now = [row[0] if regression else max(range(len(row)), key=row.__getitem__) for row in logits]  # first of ties
        if self.previous is None or self.agreed is None:
            self.agreed = [0] * len(now)
        else:
            self.agreed = [a + 1 if (abs(n - p) < REGRESSION_AGREEMENT if regression else n == p) else 0
                           for n, p, a in zip(now, self.previous, self.agreed)]
        self.previous = now
        return self.agreed

    def keep(self, go: list[bool]) -> None:
        assert self.previous is not None and self.agreed is not None
        self.previous = [v for v, g in zip(self.previous, go) if g]
        self.agreed = [v for v, g in zip(self.agreed, go) if g]


def _entropy(logits: list[float]) -> float:
    """The entropy (nats) of softmax(logits): log Σ e^(z - max) - Σ p (z - max)."""
    top = max(logits)
    weights = [math.exp(z - top) for z in logits]
    total = sum(weights)
    return math.log(total) - sum(w * (z - top) for w, z in zip(weights, logits)) / total


# (first pass 0-based, number of passes k, x, mask) -> (x after those k passes, each one's classifier's logits:
# k × rows of x × K)
StepFn = Callable[[int, int, Tensor, "Tensor | None"], tuple[Tensor, Tensor]]


def run_with_exit(x: Tensor, attention_mask: Tensor, passes: int, step: StepFn, policy: ExitPolicy,
                  regression: bool = False, group: int = 1,
                  bias: Callable[[Tensor], Tensor | None] | None = None) -> tuple[Tensor, Tensor]:
    """The layer's passes over `x` (rows × T × H; `group` consecutive rows make one example, a multiple-choice
    question's options), each example stopping when `policy` says so → (logits of each example at the pass it
    stopped after, the number of passes it ran). `bias` turns a (rows, T) attention mask into the layer's additive
    mask (None where nothing is padding)."""
    if regression and policy.threshold > 0:
        raise InputError("exit_threshold (entropy) needs class probabilities; a regression head has none: use "
                         "patience")
    n_examples = x.shape[0] // group
    running = torch.arange(n_examples, device=x.device)  # the examples still in the batch
    lengths = attention_mask.sum(-1)  # (rows,)
    mask = bias(attention_mask) if bias is not None else None
    streaks = _Streaks()
    logits_out: Tensor | None = None
    passes_out = torch.full((n_examples,), passes, dtype=torch.long, device=x.device)
    # the passes before any row can stop run as one step (under --compile one graph: at batch 1 each step's call
    # costs a fraction of a pass; docs/early-exit.md), then one pass per step
    k = policy.earliest_stop(passes)
    done = 0  # passes run so far
    while True:
        x, every = step(done, k, x, mask)
        done, every = done + k, every.float().reshape(k, len(running), -1)
        values = every.tolist()  # the rules read a few numbers a row (one transfer, then plain Python)
        if policy.patience > 0:
            for earlier in values[:-1]:  # no row can stop at these passes: they only start the streaks
                streaks.update(earlier, regression)
        logits, k = every[-1], 1
        if logits_out is None:
            logits_out = torch.empty(n_examples, logits.shape[-1], device=logits.device)
        if done == passes:
            logits_out[running] = logits
            passes_out[running] = done
            break
        stop = [False] * len(running)
        if policy.patience > 0:
            stop = [a >= policy.patience for a in streaks.update(values[-1], regression)]
        if policy.threshold > 0:
            stop = [s or _entropy(row) < policy.threshold for s, row in zip(stop, values[-1])]
        if not any(stop):
            continue
        go = [not s for s in stop]
        stopped = torch.tensor(stop, device=x.device)
        logits_out[running[stopped]] = logits[stopped]
        passes_out[running[stopped]] = done
        if not any(go):
            break
        running = running[~stopped]
        if policy.patience > 0:
            streaks.keep(go)
        rows = (~stopped).repeat_interleave(group)
        attention_mask, lengths, x = attention_mask[rows], lengths[rows], x[rows]
        longest = int(lengths.max())  # the remaining rows' padding beyond their longest is dropped
        attention_mask, x = attention_mask[:, :longest], x[:, :longest]
        mask = bias(attention_mask) if bias is not None else None
    assert logits_out is not None
    return logits_out, passes_out
