"""Optimizers and schedules: LAMB as the original ALBERT runs it, AdamW, warmup then linear/polynomial decay."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

# The original excludes these from weight decay and from LAMB's layer adaptation.
NO_DECAY_MARKERS = ("LayerNorm", "layer_norm", "bias")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: decayed and adapted weights; LayerNorm parameters and biases, neither."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in model.named_parameters():  # shared parameters appear once
        if not p.requires_grad:
            continue
        (no_decay if any(m in name for m in NO_DECAY_MARKERS) else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay, "adapt": True},
        {"params": no_decay, "weight_decay": 0.0, "adapt": False},
    ]


class Lamb(torch.optim.Optimizer):
    """LAMB (You et al. 2019) as in ALBERT's original optimizer.

    m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²   (no bias correction)
    u ← m / (√v + ε) + wd·w
    w ← w − lr · r · u,   r = ‖w‖/‖u‖ (1 if either is 0, or for groups with adapt=False)
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-6, weight_decay: float = 0.0, adapt: bool = True) -> None:
        if lr < 0 or eps < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"invalid LAMB hyperparameters lr={lr} betas={betas} eps={eps}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, adapt=adapt))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            b1, b2 = group["betas"]
            grads = [p.grad for p in params]
            for p in params:
                if not self.state[p]:
                    self.state[p]["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    self.state[p]["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            m = [self.state[p]["exp_avg"] for p in params]
            v = [self.state[p]["exp_avg_sq"] for p in params]
            torch._foreach_lerp_(m, grads, 1 - b1)  # m = b1*m + (1-b1)*g
            torch._foreach_mul_(v, b2)
            torch._foreach_addcmul_(v, grads, grads, value=1 - b2)
            denom = torch._foreach_sqrt(v)
            torch._foreach_add_(denom, group["eps"])
            updates = torch._foreach_div(m, denom)
            if group["weight_decay"]:
                torch._foreach_add_(updates, params, alpha=group["weight_decay"])
            if group["adapt"]:  # every tensor's trust ratio at once: a handful of kernels, not a few per tensor
                w_norm = torch.stack(torch._foreach_norm(params))
                u_norm = torch.stack(torch._foreach_norm(updates))
                ratio = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm))
                torch._foreach_mul_(updates, list(ratio.unbind()))
            torch._foreach_add_(params, updates, alpha=-group["lr"])
        return loss


def build_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float, betas: tuple[float, float],
                    eps: float) -> torch.optim.Optimizer:
    groups = param_groups(model, weight_decay)
    if name == "lamb":
        return Lamb(groups, lr=lr, betas=betas, eps=eps)
    if name == "adamw_original":
        # BERT/ALBERT's fine-tuning optimizer: AdamW without bias correction = LAMB without adaptation
        for g in groups:
            g["adapt"] = False
        return Lamb(groups, lr=lr, betas=betas, eps=eps)
    if name == "adamw":
        for g in groups:
            g.pop("adapt")
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)
    raise ValueError(f"unknown optimizer {name!r} (lamb, adamw or adamw_original)")


def lr_lambda(warmup_steps: int, total_steps: int, decay: str, power: float = 1.0) -> Callable[[int], float]:
    """Multiplier of the peak rate at a step: linear warmup, then linear / polynomial / cosine / one-cycle / no decay.

    As in the original, the decay runs over all `total_steps` from step 0 (warmup overrides its start)."""

    def f(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if decay == "constant":
            return 1.0
        if decay == "one_cycle":  # up during warm-up (above), then straight down from the peak to 0 at the end
            return max(0.0, 1.0 - (step - warmup_steps) / max(1, total_steps - warmup_steps))
        progress = min(1.0, step / max(1, total_steps))
        if decay == "linear":
            return 1.0 - progress
        if decay == "polynomial":
            return (1.0 - progress) ** power
        if decay == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        raise ValueError(f"unknown decay {decay!r}")

    return f
