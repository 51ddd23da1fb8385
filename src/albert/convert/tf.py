"""Original TensorFlow ALBERT checkpoints → transformers-format directories, without TensorFlow.

A TF checkpoint `PREFIX` is `PREFIX.index` (a LevelDB-format table: tensor name → BundleEntryProto)
and `PREFIX.data-NNNNN-of-NNNNN` (the raw tensors). Both are read here directly, so converting needs
neither TensorFlow nor its version quirks. Names are the original modeling.py's variable scopes; `TF_NAMES` is the
one table that maps them (TF kernels are [in, out] and are transposed for torch's Linear).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from albert.errors import CheckpointError
from albert.io.output_dirs import check_new_output, claim_output
from albert.modeling.config import AlbertConfig, check_fits_memory

_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8, 9: np.int64,
           10: np.bool_, 19: np.float16}
_BFLOAT16 = 14
_TABLE_MAGIC = 0xDB4775248B80FB57

# (TF name, our name, transpose). {g} = layer group, {i} = inner layer; "L" = the layer prefix.
_LAYER_TF = "bert/encoder/transformer/group_{g}/inner_group_{i}/"
_LAYER_PT = "albert.encoder.albert_layer_groups.{g}.albert_layers.{i}."
TF_NAMES: list[tuple[str, str, bool]] = [
    ("bert/embeddings/word_embeddings", "albert.embeddings.word_embeddings.weight", False),
    ("bert/embeddings/token_type_embeddings", "albert.embeddings.token_type_embeddings.weight", False),
    ("bert/embeddings/position_embeddings", "albert.embeddings.position_embeddings.weight", False),
    ("bert/embeddings/LayerNorm/gamma", "albert.embeddings.LayerNorm.weight", False),
    ("bert/embeddings/LayerNorm/beta", "albert.embeddings.LayerNorm.bias", False),
    ("bert/encoder/embedding_hidden_mapping_in/kernel", "albert.encoder.embedding_hidden_mapping_in.weight", True),
    ("bert/encoder/embedding_hidden_mapping_in/bias", "albert.encoder.embedding_hidden_mapping_in.bias", False),
    *[(_LAYER_TF + f"attention_1/self/{m}/kernel", _LAYER_PT + f"attention.{m}.weight", True)
      for m in ("query", "key", "value")],
    *[(_LAYER_TF + f"attention_1/self/{m}/bias", _LAYER_PT + f"attention.{m}.bias", False)
      for m in ("query", "key", "value")],
    (_LAYER_TF + "attention_1/output/dense/kernel", _LAYER_PT + "attention.dense.weight", True),
    (_LAYER_TF + "attention_1/output/dense/bias", _LAYER_PT + "attention.dense.bias", False),
    (_LAYER_TF + "LayerNorm/gamma", _LAYER_PT + "attention.LayerNorm.weight", False),
    (_LAYER_TF + "LayerNorm/beta", _LAYER_PT + "attention.LayerNorm.bias", False),
    (_LAYER_TF + "ffn_1/intermediate/dense/kernel", _LAYER_PT + "ffn.weight", True),
    (_LAYER_TF + "ffn_1/intermediate/dense/bias", _LAYER_PT + "ffn.bias", False),
    (_LAYER_TF + "ffn_1/intermediate/output/dense/kernel", _LAYER_PT + "ffn_output.weight", True),
    (_LAYER_TF + "ffn_1/intermediate/output/dense/bias", _LAYER_PT + "ffn_output.bias", False),
    (_LAYER_TF + "LayerNorm_1/gamma", _LAYER_PT + "full_layer_layer_norm.weight", False),
    (_LAYER_TF + "LayerNorm_1/beta", _LAYER_PT + "full_layer_layer_norm.bias", False),
    ("bert/pooler/dense/kernel", "albert.pooler.weight", True),
    ("bert/pooler/dense/bias", "albert.pooler.bias", False),
    ("cls/predictions/transform/dense/kernel", "predictions.dense.weight", True),
    ("cls/predictions/transform/dense/bias", "predictions.dense.bias", False),
    ("cls/predictions/transform/LayerNorm/gamma", "predictions.LayerNorm.weight", False),
    ("cls/predictions/transform/LayerNorm/beta", "predictions.LayerNorm.bias", False),
    ("cls/predictions/output_bias", "predictions.bias", False),
    ("cls/seq_relationship/output_weights", "sop_classifier.classifier.weight", False),  # already [out, in]
    ("cls/seq_relationship/output_bias", "sop_classifier.classifier.bias", False),
]
_SKIPPED = re.compile(r"(/adam_[mv]$|/lamb_[mv]$|^global_step$|/Momentum$|^_CHECKPOINTABLE_OBJECT_GRAPH$)")


def _compile(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(template).replace(r"\{g\}", r"(?P<g>\d+)").replace(r"\{i\}", r"(?P<i>\d+)")
                      + "$")


_PATTERNS = [(_compile(tf), pt, t) for tf, pt, t in TF_NAMES]


def tf_to_ours(name: str) -> tuple[str, bool] | None:
    """Our parameter name for a TF variable name (TF-Hub's `module/` prefix dropped), or None."""
    name = name.removeprefix("module/")
    for pattern, target, transpose in _PATTERNS:
        m = pattern.match(name)
        if m:
            return target.format(**m.groupdict()), transpose
    return None


# ----- reading the checkpoint format -----
def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _proto_fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message: varints as ints, length-delimited as bytes."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            out.append((field, value))
        elif wire == 1:
            out.append((field, struct.unpack_from("<Q", buf, pos)[0]))
            pos += 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            out.append((field, buf[pos:pos + n]))
            pos += n
        elif wire == 5:
            out.append((field, struct.unpack_from("<I", buf, pos)[0]))
            pos += 4
        else:
            raise CheckpointError(f"unsupported protobuf wire type {wire}")
    return out


def _block_entries(data: bytes, offset: int, size: int) -> list[tuple[bytes, bytes]]:
    block = data[offset:offset + size]
    if data[offset + size] != 0:  # the 5-byte trailer starts with the compression type
        raise CheckpointError("compressed checkpoint index blocks are not supported")
    num_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * num_restarts
    entries, pos, key = [], 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        vlen, pos = _varint(block, pos)
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        entries.append((key, block[pos:pos + vlen]))
        pos += vlen
    return entries


@dataclass
class _Entry:
    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int


def _parse_entry(value: bytes) -> _Entry:
    dtype, shape, shard, offset, size = 0, [], 0, 0, 0
    for field, v in _proto_fields(value):
        if field == 1:
            dtype = int(v)  # type: ignore[arg-type]
        elif field == 2:
            for f2, dim in _proto_fields(v):  # type: ignore[arg-type]
                if f2 == 2:
                    shape.append(next((int(x) for f3, x in _proto_fields(dim) if f3 == 1), 0))  # type: ignore
        elif field == 3:
            shard = int(v)  # type: ignore[arg-type]
        elif field == 4:
            offset = int(v)  # type: ignore[arg-type]
        elif field == 5:
            size = int(v)  # type: ignore[arg-type]
        elif field == 7:
            raise CheckpointError("partitioned (sliced) variables are not supported")
    return _Entry(dtype, tuple(shape), shard, offset, size)


def read_tf_checkpoint(prefix: str | Path) -> dict[str, np.ndarray]:
    """All tensors of a TF (V2, TensorBundle) checkpoint, by variable name."""
    prefix = str(prefix).removesuffix(".index")
    index = Path(prefix + ".index")
    if not index.is_file():
        raise CheckpointError(f"no TensorFlow checkpoint at {prefix} (looked for {index})")
    data = index.read_bytes()
    if len(data) < 48 or struct.unpack_from("<Q", data, len(data) - 8)[0] != _TABLE_MAGIC:
        raise CheckpointError(f"{index} is not a TensorFlow checkpoint index")
    footer = data[-48:]
    _, p = _varint(footer, 0)  # metaindex handle (unused)
    _, p = _varint(footer, p)
    index_offset, p = _varint(footer, p)
    index_size, p = _varint(footer, p)
    entries: dict[str, _Entry] = {}
    num_shards = 1
    for _, handle in _block_entries(data, index_offset, index_size):
        off, q = _varint(handle, 0)
        size, _ = _varint(handle, q)
        for key, value in _block_entries(data, off, size):
            if key == b"":  # the bundle header
                num_shards = next((int(v) for f, v in _proto_fields(value) if f == 1), 1)  # type: ignore
                if any(f == 2 and v == 1 for f, v in _proto_fields(value)):
                    raise CheckpointError("big-endian checkpoints are not supported")
                continue
            entries[key.decode("utf-8")] = _parse_entry(value)
    shards: dict[int, bytes] = {}
    tensors: dict[str, np.ndarray] = {}
    for name, e in entries.items():
        if e.shard not in shards:
            path = Path(f"{prefix}.data-{e.shard:05d}-of-{num_shards:05d}")
            if not path.is_file():
                raise CheckpointError(f"missing checkpoint shard {path}")
            shards[e.shard] = path.read_bytes()
        raw = shards[e.shard][e.offset:e.offset + e.size]
        if e.dtype == _BFLOAT16:
            tensors[name] = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(e.shape)
        elif e.dtype in _DTYPES:
            tensors[name] = np.frombuffer(raw, _DTYPES[e.dtype]).reshape(e.shape)
        # strings and other kinds (e.g. the object graph) hold no weights
    return tensors


# ----- conversion -----
def convert_tf_checkpoint(prefix: str | Path, config_path: str | Path, out: str | Path) -> dict[str, list[str]]:
    """Convert to an AlbertForPreTraining directory; returns what was skipped and what stayed initialised."""
    from albert.modeling.heads import AlbertForPreTraining

    check_new_output(out, "convert")
    config = AlbertConfig.from_json_file(config_path)
    if config.hidden_act == "gelu":
        # The original TF code's gelu is the tanh approximation; keep its numerics.
        config = AlbertConfig.from_dict({**config.to_dict(), "hidden_act": "gelu_new"})
    check_fits_memory(config)
    tensors = read_tf_checkpoint(prefix)
    model = AlbertForPreTraining(config)
    own = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    skipped, unknown = [], []
    for name, array in tensors.items():
        if _SKIPPED.search(name):
            skipped.append(name)
            continue
        target = tf_to_ours(name)
        if target is None:
            unknown.append(name)
            continue
        key, transpose = target
        t = torch.from_numpy(np.array(array.T if transpose else array)).float()  # a copy: the file is read-only
        if key not in own:
            raise CheckpointError(f"{name} maps to {key}, which the config's model does not have "
                                  f"(num_hidden_groups / inner_group_num?)")
        if tuple(t.shape) != tuple(own[key].shape):
            raise CheckpointError(f"{name}: shape {tuple(array.shape)} does not fit {key} {tuple(own[key].shape)}")
        state[key] = t
    mapping_key = "albert.encoder.embedding_hidden_mapping_in"
    if mapping_key + ".weight" not in state and config.embedding_size == config.hidden_size:
        # The original has no projection when E == H: it is the identity.
        state[mapping_key + ".weight"] = torch.eye(config.hidden_size)
        state[mapping_key + ".bias"] = torch.zeros(config.hidden_size)
    expected = set(own) - set(model.tied_keys)
    missing = sorted(expected - set(state))
    if any(k.startswith("albert.") for k in missing):
        raise CheckpointError(f"the checkpoint lacks backbone weights: {', '.join(missing[:5])}")
    model.load_state_dict(state, strict=False)
    model.tie_weights()
    with claim_output(out, "convert") as staging:
        model.save_pretrained(staging)
    return {"skipped": sorted(skipped), "unknown": sorted(unknown), "initialised": missing}
