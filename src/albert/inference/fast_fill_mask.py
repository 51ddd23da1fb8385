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

from albert.errors import CheckpointError, InputError
from albert.io.hub import CONFIG_NAME, SAFE_WEIGHTS_NAME, resolve_model_dir
from albert.modeling.config import AlbertConfig
from albert.tasks.fill_mask import fill_mask
from albert.tokenization.tokenizer import AlbertTokenizer

logger = logging.getLogger(__name__)
ONNX_NAME = "model.onnx"
# ONNX metadata: the safetensors file whose bytes the graph's weights point into, and its digest
WEIGHTS_KEY = "albert.weights_file"
DIGEST_KEY = "albert.weights_sha256"

def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


class OnnxUnavailable(InputError):
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
        picked = np.take_along_axis(logits, np.asarray(positions)[:, :, None], axis=1)
        if not np.isfinite(picked).all():
            raise CheckpointError("the model computed non-finite values (NaN or infinity): its weights are broken")
        return picked

    def __call__(self, inputs: str | list[str], top_k: int = 5) -> Any:
        return fill_mask(self.tokenizer, inputs, top_k, self.max_length, self._logits)


def load_fill_mask(model: str | Path, engine: str = "auto", device: str = "auto", precision: str = "auto",
                   compile: bool = False) -> Callable[..., Any]:
    """The fill-mask engine for `albert fill-mask`. auto: ONNX Runtime where the directory ships a model.onnx (a
    fraction of torch's import time), else PyTorch; asking for a device, bf16, int8 or compilation means PyTorch."""
    plain = device in ("auto", "cpu") and precision in ("auto", "fp32") and not compile
    if engine not in ("auto", "torch", "onnxruntime"):
        raise InputError(f"unknown engine {engine!r}; known: auto, torch, onnxruntime")
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
