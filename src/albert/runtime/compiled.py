"""A prepared model's forward under torch.compile (`--compile`): inductor's settings for it, and early exit's loop
compiled step by step (the decision between passes stays in Python)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from albert.modeling.pretrained import AlbertPreTrainedModel


# inductor's settings for a compiled model, in force around each of its calls (compile_model)
INDUCTOR_SETTINGS: dict[str, object] = {"freezing": True}
INDUCTOR_CPU_SETTINGS: dict[str, object] = {"cpp_wrapper": True, "realize_cpu_opcount_threshold": 2}


def compile_model(model: AlbertPreTrainedModel, device: torch.device) -> AlbertPreTrainedModel:
    """`model.forward` under torch.compile (inductor), for prepare_for_inference: int8, or fp32/bf16 with plain
    matrices. The first call compiles (20-50 s for albert-base on 2 cores); shapes are dynamic, so other lengths and
    batch sizes reuse it, except that a size of 1 (one row, one [MASK]) compiles apart from larger ones
    (Pipeline.warm_up, which `albert serve --compile` runs at start).

    - freezing: the weights are constants, which inductor folds and prepacks for oneDNN.
    - cpp_wrapper, on the CPU: generated C++ calls the graph's kernels, not Python, whose per-call cost otherwise
      weighs most at small batches.
    - realize_cpu_opcount_threshold, on the CPU: an expression with more than 2 ops that several others read is
      computed once and stored, not recomputed inside each reader. Why: an int8 matrix's input is quantized with a
      scale and zero point computed from its range in a few scalar ops (Int8Linear._quantize_in_graph), and by
      default inductor recomputed them, three divisions deep, for every 16 values of the quantizing loop. A torch
      without one of these settings compiles without it.
    - The settings are patched around every call instead of passed as torch.compile(options=...), which did not
      freeze (the int8 weights stayed graph inputs, which inductor refused). Compilation happens lazily, at a call,
      so the patch is in force when it does.
    What each setting gained: docs/kernel-notes.md.
    The model's forward hooks (the check that outputs are finite) run outside the compiled code."""
    import torch._dynamo.config as dynamo_config
    import torch._inductor.config as inductor_config

    wanted = {**INDUCTOR_SETTINGS, **(INDUCTOR_CPU_SETTINGS if device.type == "cpu" else {})}
    settings = {k: v for k, v in wanted.items() if hasattr(inductor_config, k)}  # older torch: fewer settings

    def patched(fn: Callable[..., Any], graphs: int | None = None) -> Callable[..., Any]:
        """`fn` compiled, called under the settings; `graphs`: Dynamo's limit of graphs for fn's code, where
        torch's default (8) is too few."""
        compiled = torch.compile(fn, dynamic=True)

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            limit = dynamo_config.patch(recompile_limit=graphs) if graphs else contextlib.nullcontext()
            with inductor_config.patch(settings), limit:
                return compiled(*args, **kwargs)
        return call

    eager, whole = model.forward, patched(model.forward)
    if getattr(model.config, "early_exit", None) and hasattr(model, "exit_step"):
        # early exit's loop decides after every pass, in Python: its steps are compiled on their own
        model.compiled_steps = _ExitSteps(model, patched)  # type: ignore[assignment]

    @functools.wraps(eager)
    def forward(*args: Any, **kwargs: Any) -> Any:
        policy = kwargs.get("exit_policy")
        return eager(*args, **kwargs) if policy is not None and policy.active else whole(*args, **kwargs)

    model.forward = forward  # type: ignore[method-assign]
    return model


class _ExitStep(nn.Module):
    """Early exit's step (EarlyExitHead.exit_step on the prepared weights) from `first_pass`, one pass per
    classifier: (x, mask, classifiers' (weight, bias)) → (x, logits)."""

    def __init__(self, head: nn.Module, first_pass: int) -> None:
        super().__init__()
        self.head, self.first_pass = head, first_pass

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, classifiers: list[tuple[torch.Tensor, torch.Tensor]]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        head: Any = self.head
        return head.exit_step(self.first_pass, x, mask, head.albert.encoder.layer_weights(x.dtype), classifiers)


class _ExitSteps:
    """The compiled steps of early exit's loop, made on first use: one graph per layer group for a single pass
    (every pass of a group runs the same weights), and one per run of several passes (the loop's first step: the
    passes before any row can stop). A batch of one row takes the eager step instead: at one row a compiled step's
    call (dynamo's guard check and the graph's entry) costs more than the graph saves.

    Dynamo keeps the graphs of one function together, and `_ExitStep.forward` is one function for every step: each
    step is a graph, twice over (with and without a padding mask), and a size of 1 elsewhere (a text of one token)
    compiles apart again. Past torch's default limit of 8 it would run the rest eagerly, unannounced but for a
    warning, so the limit is raised to what a model can use."""

    def __init__(self, head: nn.Module, compile: Callable[..., Callable[..., Any]]) -> None:
        self.head, self.compile = head, compile
        self.steps: dict[tuple[int, int], Callable[..., Any]] = {}
        cfg: Any = head.config
        self.graphs = 4 * (cfg.num_hidden_layers + cfg.num_hidden_groups)
        self.per_group = cfg.num_hidden_layers // cfg.num_hidden_groups

    def __call__(self, first_pass: int, passes: int) -> Callable[..., Any]:
        head: Any = self.head
        group_first = first_pass - first_pass % self.per_group if passes == 1 else first_pass
        key = (group_first, passes)  # a single pass: its group's graph (keyed by the group's first pass)
        if key not in self.steps:
            self.steps[key] = self.compile(_ExitStep(self.head, group_first), self.graphs)
        compiled = self.steps[key]

        def step(x: torch.Tensor, mask: torch.Tensor | None, classifiers: list[tuple[torch.Tensor, torch.Tensor]]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
            if x.shape[0] == 1:  # one row: a compiled step's call costs more than it saves (docs/early-exit.md)
                weights = head.albert.encoder.layer_weights(x.dtype)
                return head.exit_step(first_pass, x, mask, weights, classifiers)  # type: ignore[no-any-return]
            return compiled(x, mask, classifiers)  # type: ignore[no-any-return]
        return step
