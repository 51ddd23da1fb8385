"""ONNX export with dynamic batch and sequence axes, the shared layer stored once.

Older exporters traced each of the 12 (or 24) layer passes with its own copy of the shared weights
(albert-base: 45 MB of weights → 340 MB of ONNX; xlarge past the 2 GB protobuf limit). Here the shared
layer's weights are prepared once per forward (albert.modeling.backbone.LayerWeights), so every pass of the
exported graph reads the same initializers.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from albert.errors import ConfigError
from albert.io.output_dirs import check_new_file, check_new_output
from albert.modeling.heads import MODEL_CLASSES
from albert.modeling.pretrained import (
    CONFIG_NAME,
    SAFE_WEIGHTS_NAME,
    AlbertPreTrainedModel,
    resolve_model_dir,
    saved_architecture,
)
from albert.tasks.registry import HEADS

logger = logging.getLogger(__name__)

INPUTS = ("input_ids", "attention_mask", "token_type_ids")



class _Outputs(nn.Module):
    """The model with plain tensor outputs, as ONNX needs."""

    def __init__(self, model: AlbertPreTrainedModel, names: tuple[str, ...]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return tuple(getattr(out, n) for n in self.names)


def load_for_export(name_or_path: str | Path, architecture: str | None = None) -> AlbertPreTrainedModel:
    directory = resolve_model_dir(name_or_path)
    arch = architecture or saved_architecture(directory) or "AlbertModel"
    if arch not in MODEL_CLASSES:
        raise ConfigError(f"unknown architecture {arch!r}; one of {', '.join(MODEL_CLASSES)}")
    return MODEL_CLASSES[arch].from_pretrained(directory).eval()


def _fold_weight_transposes(model: Any) -> None:
    """Replace Transpose(initializer) and Transpose(Concat(initializers)) by one initializer each.

    The exporter leaves the shared layer's matrices behind a Transpose (and Q/K/V behind a Concat), and ONNX
    Runtime's quantizer only quantizes a MatMul whose weight is an initializer. Folding here (not with
    ORT's pre-processing, which also copies the tied word embeddings) keeps every matrix stored once."""
    from onnx import numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    producers = {o: n for n in g.node for o in n.output}

    def constant(name: str) -> Any:
        if name in inits:
            return numpy_helper.to_array(inits[name])
        node = producers.get(name)
        if node is not None and node.op_type == "Concat" and all(x in inits for x in node.input):
            axis = next(a.i for a in node.attribute if a.name == "axis")
            return np.concatenate([numpy_helper.to_array(inits[x]) for x in node.input], axis=axis)
        return None

    folded: dict[tuple[tuple[str, ...], tuple[int, ...]], str] = {}  # (sources, perm) → initializer
    for node in list(g.node):
        value = constant(node.input[0]) if node.op_type == "Transpose" else None
        if value is None:
            continue
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        src = node.input[0]
        key = ((src,) if src in inits else tuple(producers[src].input), tuple(perm or ()))
        name = folded.setdefault(key, node.output[0])
        if name == node.output[0]:
            g.initializer.append(numpy_helper.from_array(np.ascontiguousarray(np.transpose(value, perm)), name))
        else:  # the exporter transposed the same weight again for another pass: read the one folded copy
            for other in g.node:
                for k, x in enumerate(other.input):
                    if x == node.output[0]:
                        other.input[k] = name
        g.node.remove(node)
    while True:  # drop the Concats and initializers nothing reads any more
        read = {x for n in g.node for x in n.input} | {o.name for o in g.output}
        dead = [n for n in g.node if n.op_type == "Concat" and not any(o in read for o in n.output)]
        for n in dead:
            g.node.remove(n)
        if not dead:
            break
    for init in [i for i in g.initializer if i.name not in read]:
        g.initializer.remove(init)
    # The exporter's own folding of small weights may have left one transposed copy per layer pass: read one.
    first: dict[tuple[Any, ...], str] = {}
    rename: dict[str, str] = {}
    for init in list(g.initializer):
        array = numpy_helper.to_array(init)
        content = (array.dtype.str, array.shape, array.tobytes())
        if first.setdefault(content, init.name) != init.name:
            rename[init.name] = first[content]
            g.initializer.remove(init)
    for node in g.node:
        for k, x in enumerate(node.input):
            if x in rename:
                node.input[k] = rename[x]


def read_safetensors_layout(path: Path) -> dict[bytes, tuple[int, int]]:
    """Each tensor's bytes → (offset in the file, length). A safetensors file is an 8-byte little-endian header
    length, a JSON header, then the raw row-major tensors: exactly what ONNX external data can point at."""
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + size])
    layout: dict[bytes, tuple[int, int]] = {}
    for name, entry in header.items():
        if name != "__metadata__":
            start, end = (8 + size + x for x in entry["data_offsets"])
            layout.setdefault(raw[start:end], (start, end - start))
    return layout


def _share_weights(model: Any, weights: Path) -> int:
    """Point every initializer equal to a tensor of `weights` (in the ONNX file's directory) at that tensor's
    bytes, so the graph stores no weight the directory already holds; returns how many were linked. The file's
    digest goes into the metadata: readers check it, since a re-saved file moves the bytes."""
    from onnx import TensorProto, numpy_helper

    from albert.inference.fast_fill_mask import DIGEST_KEY, WEIGHTS_KEY, file_sha256

    layout = read_safetensors_layout(weights)
    linked = 0
    for init in model.graph.initializer:
        found = layout.get(numpy_helper.to_array(init).tobytes())
        if found is None or init.data_type != TensorProto.FLOAT:
            continue
        offset, length = found
        init.ClearField("raw_data")
        init.ClearField("float_data")
        init.data_location = TensorProto.EXTERNAL
        del init.external_data[:]
        for key, value in (("location", weights.name), ("offset", str(offset)), ("length", str(length))):
            entry = init.external_data.add()
            entry.key, entry.value = key, value
        linked += 1
    for key, value in ((WEIGHTS_KEY, weights.name), (DIGEST_KEY, file_sha256(weights))):
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    return linked


def _quantize_int8(source: Path, out: Path) -> None:
    """Dynamic int8 (ONNX Runtime) for the shared layer's matrices, per output channel; like the PyTorch int8
    path, the embedding projection and the heads (matrices used once) stay fp32, which keeps near-tied top
    predictions from flipping. On the embedded model: 99.25% top-1 fill-mask agreement with fp32 against 98.5%
    when every MatMul is quantized (bench/quantized_accuracy.py)."""
    import collections

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(source))
    _fold_weight_transposes(model)
    folded = source.with_suffix(".folded.onnx")
    onnx.save(model, str(folded))
    g = model.graph
    inits = {i.name for i in g.initializer}
    uses = collections.Counter(n.input[1] for n in g.node if n.op_type == "MatMul" and n.input[1] in inits)
    shared = any(count > 1 for count in uses.values())
    once = [n.name for n in g.node if shared and n.op_type == "MatMul" and uses.get(n.input[1], 0) == 1]
    # the pooler and classifier heads are Gemm nodes, which the quantizer rewrites as NAME_MatMul + Add first
    once += [name for n in g.node if shared and n.op_type == "Gemm" for name in (n.name, n.name + "_MatMul")]
    try:
        quantize_dynamic(str(folded), str(out), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"], nodes_to_exclude=once)
    finally:
        folded.unlink()


def export_onnx(model: AlbertPreTrainedModel, out: str | Path, opset: int = 18, quantize: str | None = None,
                share_weights: Path | None = None) -> dict:
    """Write `out` (.onnx, weights inside when under 2 GB) and return {path, bytes, outputs}.

    share_weights: the model's own model.safetensors, in `out`'s directory; the graph then reads every weight
    it can from that file instead of storing a copy (ONNX external data at the file's offsets)."""
    arch = type(model).__name__
    if share_weights is not None:
        if quantize:
            raise ConfigError("--share-weights reads the fp32 weights of model.safetensors; it cannot be quantized")
        if Path(share_weights).resolve().parent != Path(out).resolve().parent:
            raise ConfigError(f"with --share-weights the ONNX file must be written next to {share_weights}")
    names = HEADS[arch].outputs
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    choice = arch == "AlbertForMultipleChoice"
    shape = (2, 2, 8) if choice else (2, 8)
    example = (torch.randint(5, model.config.vocab_size, shape), torch.ones(shape, dtype=torch.long),
               torch.zeros(shape, dtype=torch.long))
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence", max=model.config.max_position_embeddings)
    dims: dict[int, Any] = {0: batch, 2: seq} if choice else {0: batch, 1: seq}
    if choice:
        dims[1] = torch.export.Dim("choices")
    wrapped = _Outputs(model.float().eval(), names).eval()
    with torch.no_grad():
        program = torch.onnx.export(wrapped, example, dynamo=True, opset_version=opset, input_names=list(INPUTS),
                                    output_names=list(names), dynamic_shapes={k: dims for k in INPUTS},
                                    external_data=False, verbose=False)
    if program is None:
        raise ConfigError("the ONNX exporter returned nothing")
    written = next((o.version for o in program.model_proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if written != opset:  # the exporter writes the opsets it supports and says so only in a warning
        raise ConfigError(f"--opset {opset} cannot be honoured: torch's exporter wrote opset {written} (use "
                          f"{written} or newer)")
    tmp = out.with_suffix(".tmp.onnx")
    try:
        _write(program, tmp, out, quantize, share_weights)
    finally:
        tmp.unlink(missing_ok=True)
    return {"path": str(out), "bytes": out.stat().st_size, "outputs": list(names)}


def _write(program: Any, tmp: Path, out: Path, quantize: str | None, share_weights: Path | None) -> None:
    program.save(str(tmp))
    if share_weights is not None:
        import onnx

        graph = onnx.load(str(tmp))
        tmp.unlink()
        if not _share_weights(graph, Path(share_weights)):
            raise ConfigError(f"no weight of the model equals a tensor of {share_weights}: was it saved from "
                              "another model or in another dtype?")
        onnx.save(graph, str(out))
    elif quantize == "int8":
        _quantize_int8(tmp, out)
        tmp.unlink()
    elif quantize is None:
        os.replace(tmp, out)
    else:
        raise ConfigError(f"unknown quantization {quantize!r} (int8)")


def export_model_onnx(name_or_path: str | Path, out: str | Path, architecture: str | None = None, opset: int = 18,
                      quantize: str | None = None, share_weights: bool = False, full_depth: bool = False) -> dict:
    """`albert export onnx`: a model directory (or name) to ONNX; share_weights: the graph reads its weights from
    the directory's own model.safetensors (`out` must be in that directory).

    A model fine-tuned with early exit is refused unless `full_depth`: an ONNX graph runs every pass, and the
    exit's decision after each pass (rows leaving the batch) lives in albert's runtime, so the export would
    silently drop what the model was trained for. With `full_depth` the graph is the model at full depth (its last
    classifier), as transformers runs it."""
    check_new_file(out)
    from albert.modeling.config import AlbertConfig

    config = AlbertConfig.from_json_file(resolve_model_dir(name_or_path) / CONFIG_NAME, strict=False)
    if config.early_exit and not full_depth:
        raise ConfigError("this model exits early (fine-tuned with --early_exit true), which runs in albert's runtime "
                          "only (an ONNX graph runs every pass): serve it with albert serve, or export the full-depth "
                          "model with --full-depth")
    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing or (quantize and importlib.util.find_spec("onnxruntime") is None):
        raise ConfigError(f"ONNX export needs {', '.join(missing) or 'onnxruntime'}: pip install 'albert-lm[onnx]'")
    weights = resolve_model_dir(name_or_path) / SAFE_WEIGHTS_NAME if share_weights else None
    if weights is not None and not weights.is_file():
        raise ConfigError(f"--share-weights needs {weights}")
    return export_onnx(load_for_export(name_or_path, architecture), out, opset=opset, quantize=quantize,
                       share_weights=weights)


def export_sentence_transformers(name_or_path: str | Path, out: str | Path, pooling: str = "auto",
                                 normalize: bool | None = None) -> Path:
    """`albert export sentence-transformers`: the model as a sentence-transformers directory (modules.json, its
    pooling and normalisation), which `SentenceTransformer(out)` loads with the vectors `albert embed` gives."""
    from albert.inference.pipelines import pipeline
    from albert.io.output_dirs import claim_output

    out = Path(out)
    check_new_output(out, "export sentence-transformers")
    pipe = pipeline("feature-extraction", model=name_or_path, device="cpu", precision="fp32")
    with claim_output(out, "export sentence-transformers") as staging:
        pipe.save_pretrained(staging, pooling, normalize)
    return out
