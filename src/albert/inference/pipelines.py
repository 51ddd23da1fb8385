"""Inference pipelines: `albert.pipeline(task, model=...)`, outputs shaped like transformers' pipelines."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from albert.heads import AlbertForMaskedLM, AlbertPreTrainedModel
from albert.tokenizer import AlbertTokenizer, TokenizerError

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "albert-small-en"


def cpu_has_bf16() -> bool:
    """AMX or AVX512-BF16: bf16 matrix work is then several times faster than fp32 on this CPU."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_runtime(device: str = "auto", precision: str = "auto") -> tuple[torch.device, torch.dtype]:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TokenizerError("device cuda requested but no CUDA device is available")
    if precision == "auto":
        precision = "bf16" if dev.type == "cuda" or cpu_has_bf16() else "fp32"
    if precision not in ("bf16", "fp32"):
        raise TokenizerError(f"unknown precision {precision!r} (auto, bf16 or fp32)")
    return dev, torch.bfloat16 if precision == "bf16" else torch.float32


class Pipeline:
    model_class: type[AlbertPreTrainedModel] = AlbertForMaskedLM

    def __init__(self, model: AlbertPreTrainedModel, tokenizer: AlbertTokenizer, device: torch.device,
                 dtype: torch.dtype) -> None:
        self.model = model.to(device=device, dtype=dtype).eval()
        self.tokenizer = tokenizer
        self.device = device
        self.dtype = dtype

    def _forward(self, enc: dict[str, Any]) -> Any:
        inputs = {k: torch.as_tensor(v, device=self.device) for k, v in enc.items()
                  if k in ("input_ids", "attention_mask", "token_type_ids")}
        with torch.inference_mode():
            return self.model(**inputs)


class FillMaskPipeline(Pipeline):
    model_class = AlbertForMaskedLM

    def __call__(self, inputs: str | list[str], top_k: int = 5) -> Any:
        if isinstance(inputs, list):
            return [self(text, top_k) for text in inputs]
        if top_k < 1:
            raise TokenizerError(f"top_k must be >= 1, got {top_k}")
        tok = self.tokenizer
        enc = tok([inputs], truncation=True, max_length=self.model.config.max_position_embeddings, padding=True)
        ids = enc["input_ids"][0]
        positions = [i for i, t in enumerate(ids) if t == tok.mask_token_id]
        if not positions:
            raise TokenizerError(f"no [MASK] in the input: {inputs!r}")
        logits = self._forward(enc).logits[0].float()  # (T, V)
        special = torch.tensor(tok.all_special_ids, device=logits.device)
        results = []
        for pos in positions:
            # scores are the model's probabilities over the whole vocabulary (as transformers reports
            # them); special tokens ([CLS], <pad>, [MASK], ...) are just never proposed
            probs = logits[pos].softmax(-1)
            ranked = probs.clone()
            ranked[special] = -1.0
            top = ranked.topk(min(top_k, probs.numel() - len(special)))
            group = []
            for p, t in zip(top.values.tolist(), top.indices.tolist()):
                filled = list(ids)
                filled[pos] = t
                keep = [x for x in filled if x not in (tok.cls_token_id, tok.sep_token_id, tok.pad_token_id)]
                group.append({"score": p, "token": t, "token_str": tok.decode([t]), "sequence": tok.decode(keep)})
            results.append(group)
        return results[0] if len(results) == 1 else results


PIPELINES: dict[str, type[Pipeline]] = {"fill-mask": FillMaskPipeline}


def pipeline(task: str, model: str | Path | AlbertPreTrainedModel = DEFAULT_MODEL,
             tokenizer: str | Path | AlbertTokenizer | None = None, device: str = "auto",
             precision: str = "auto") -> Any:
    """Build a pipeline: `fill-mask` (more tasks in albert.inference)."""
    if task not in PIPELINES:
        raise TokenizerError(f"unknown pipeline task {task!r}; known: {', '.join(sorted(PIPELINES))}")
    cls = PIPELINES[task]
    dev, dtype = resolve_runtime(device, precision)
    if isinstance(model, AlbertPreTrainedModel):
        if tokenizer is None:
            raise TokenizerError("pass tokenizer= with a model object")
        loaded = model
    else:
        loaded = cls.model_class.from_pretrained(model)
        tokenizer = tokenizer if tokenizer is not None else model
    tok = tokenizer if isinstance(tokenizer, AlbertTokenizer) else AlbertTokenizer.from_pretrained(tokenizer)
    return cls(loaded, tok, dev, dtype)
