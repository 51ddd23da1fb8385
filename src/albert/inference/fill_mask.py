"""fill-mask: the answers' ranking and shape (shared by both engines), and the ONNX Runtime engine.

`albert fill-mask` is the first thing a user runs, once per process, so its start-up time is what they see.
Importing torch alone takes 1-3 s on a small CPU; ONNX Runtime 0.1-0.4 s. A model directory that ships a
`model.onnx` whose weights are read from the directory's own model.safetensors (`albert export onnx
--share-weights`; the embedded model has one) is therefore answered through ONNX Runtime, without importing
torch. This module imports neither torch nor the model code (`load_fill_mask` does, when PyTorch is the engine).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from albert.config import AlbertConfig
from albert.hub import CONFIG_NAME, SAFE_WEIGHTS_NAME, resolve_model_dir
from albert.inference.inputs import buckets, pad_batch
from albert.tokenizer import AlbertTokenizer, TokenizerError

logger = logging.getLogger(__name__)
ONNX_NAME = "model.onnx"
# ONNX metadata: the safetensors file whose bytes the graph's weights point into, and its digest
WEIGHTS_KEY = "albert.weights_file"
DIGEST_KEY = "albert.weights_sha256"

# (encoded, padded batch; each row's [MASK] positions, padded with 0) → (B, P, V) logits at those positions
Logits = Callable[[dict[str, list[list[int]]], list[list[int]]], np.ndarray]
BATCH_SIZE = 32  # texts per forward


def fill_mask(tokenizer: AlbertTokenizer, inputs: str | list[str], top_k: int, max_length: int,
              logits_of: Logits) -> Any:
    """Per [MASK] of each text, its top_k fillers as transformers' fill-mask pipeline lists them; one text with
    one mask gives a flat list. Several texts run in batches of similar length."""
    texts = [inputs] if isinstance(inputs, str) else list(inputs)
    if top_k < 1:
        raise TokenizerError(f"top_k must be >= 1, got {top_k}")
    tok = tokenizer
    rows = tok(texts, truncation=True, max_length=max_length)
    masks = [[i for i, t in enumerate(ids) if t == tok.mask_token_id] for ids in rows["input_ids"]]
    for n, (text, positions) in enumerate(zip(texts, masks), 1):
        if positions:
            continue
        shown = text if len(text) <= 80 else text[:60] + " ... " + text[-15:]
        full = tok(text)["input_ids"]
        if tok.mask_token_id in full:
            raise TokenizerError(f"input {n}: its [MASK] is past the model's {max_length}-token limit (the text has "
                                 f"{len(full)} tokens; shorten it before the mask): {shown!r}")
        raise TokenizerError(f"no [MASK] in input {n}: {shown!r}")
    results: list[Any] = [None] * len(texts)
    for idx in buckets([len(ids) for ids in rows["input_ids"]], BATCH_SIZE):
        P = max(len(masks[i]) for i in idx)
        batch = pad_batch([rows["input_ids"][i] for i in idx], [rows["token_type_ids"][i] for i in idx],
                          tok.pad_token_id)
        logits = np.asarray(logits_of(batch, [masks[i] + [0] * (P - len(masks[i])) for i in idx]), dtype=np.float32)
        for b, i in enumerate(idx):
            results[i] = _fillers(tok, rows["input_ids"][i], masks[i], logits[b], top_k)
    return results[0] if isinstance(inputs, str) else results


def _fillers(tok: AlbertTokenizer, ids: list[int], positions: list[int], logits: np.ndarray, top_k: int) -> Any:
    """`logits` (P, V): row j for the j-th [MASK], at `positions[j]` of `ids`."""
    special = np.asarray(tok.all_special_ids)
    dropped = {tok.cls_token_id, tok.sep_token_id, tok.pad_token_id}
    results = []
    for j, pos in enumerate(positions):
        # scores are the model's probabilities over the whole vocabulary (as transformers reports them);
        # special tokens ([CLS], <pad>, [MASK], ...) are just never proposed
        row = logits[j] - logits[j].max()
        probs = np.exp(row)
        probs /= probs.sum()
        ranked = probs.copy()
        ranked[special] = -1.0
        k = min(top_k, probs.size - len(special))
        top = np.argpartition(-ranked, k - 1)[:k]
        top = top[np.argsort(-ranked[top], kind="stable")]
        group = []
        for t in top.tolist():
            filled = list(ids)
            filled[pos] = t
            keep = [x for x in filled if x not in dropped]
            group.append({"score": float(probs[t]), "token": t, "token_str": tok.decode([t]),
                          "sequence": tok.decode(keep)})
        results.append(group)
    return results[0] if len(results) == 1 else results


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


class OnnxUnavailable(TokenizerError):
    """The directory cannot be answered through ONNX Runtime (no graph, weights changed, no onnxruntime)."""


class OnnxFillMaskPipeline:
    """fill-mask through ONNX Runtime on the CPU, in fp32: same answers as the PyTorch pipeline in fp32."""

    def __init__(self, name_or_path: str | Path) -> None:
        directory = resolve_model_dir(name_or_path)
        graph = directory / ONNX_NAME
        if not graph.is_file():
            raise OnnxUnavailable(f"no {ONNX_NAME} in {directory} (albert export onnx --share-weights makes one)")
        try:
            import onnxruntime as ort
        except ImportError:
            raise OnnxUnavailable("onnxruntime is not installed") from None
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: its warnings are about graph rewrites, not the answers
        try:
            session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for an unreadable graph
            raise OnnxUnavailable(f"onnxruntime cannot load {graph}: {str(e).splitlines()[0][:200]}") from None
        meta = session.get_modelmeta().custom_metadata_map
        weights = directory / meta.get(WEIGHTS_KEY, SAFE_WEIGHTS_NAME)
        # the graph reads raw bytes at fixed offsets: a re-saved model.safetensors would feed it nonsense
        if DIGEST_KEY not in meta or not weights.is_file() or file_sha256(weights) != meta[DIGEST_KEY]:
            raise OnnxUnavailable(f"{graph} was exported from other weights than {weights}")
        self.session = session
        self.tokenizer = AlbertTokenizer.from_pretrained(directory)
        self.max_length = AlbertConfig.from_json_file(directory / CONFIG_NAME).max_position_embeddings

    def _logits(self, enc: dict[str, list[list[int]]], positions: list[list[int]]) -> np.ndarray:
        feed = {k: np.asarray(enc[k], dtype=np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
        logits = self.session.run(["logits"], feed)[0]  # (B, T, V): the graph computes every position
        return np.take_along_axis(logits, np.asarray(positions)[:, :, None], axis=1)

    def __call__(self, inputs: str | list[str], top_k: int = 5) -> Any:
        return fill_mask(self.tokenizer, inputs, top_k, self.max_length, self._logits)


def load_fill_mask(model: str | Path, engine: str = "auto", device: str = "auto", precision: str = "auto",
                   compile: bool = False) -> Callable[..., Any]:
    """The fill-mask engine for `albert fill-mask`. auto: ONNX Runtime where the directory ships a model.onnx (a
    fraction of torch's import time), else PyTorch; asking for a device, bf16, int8 or compilation means PyTorch."""
    plain = device in ("auto", "cpu") and precision in ("auto", "fp32") and not compile
    if engine not in ("auto", "torch", "onnxruntime"):
        raise TokenizerError(f"unknown engine {engine!r}; known: auto, torch, onnxruntime")
    if engine == "onnxruntime" and not plain:
        raise OnnxUnavailable("--engine onnxruntime runs fp32 on the CPU; drop --device/--precision/--compile")
    if engine == "onnxruntime" or (engine == "auto" and plain):
        try:
            return OnnxFillMaskPipeline(model)
        except OnnxUnavailable as e:
            if engine == "onnxruntime":
                raise
            logger.info("fill-mask through PyTorch: %s", e)
    from albert.inference.pipelines import pipeline  # imports torch

    return pipeline("fill-mask", model=model, device=device, precision=precision, compile=compile)
