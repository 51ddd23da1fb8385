"""Checkpoints: transformers-format directories both ways (names resolved by albert.io.hub), and the original TF names.

Our parameter names ARE transformers' names, so reading and writing transformers checkpoints needs
no renaming, only the base-model prefix (`albert.`) added or removed and tied aliases skipped. The
original TensorFlow names differ; `TF_KEY_MAP` is the one table that maps them (see `albert.convert.tf`).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from albert.errors import CheckpointError, ConfigError
from albert.io.files import read_model_json, require_file
from albert.io.hub import (  # noqa: F401  (re-exported: albert.modeling.pretrained is where users look)
    CONFIG_NAME,
    HUB_ALIASES,
    HUB_FILES,
    OFFICIAL_NAMES,
    SAFE_INDEX_NAME,
    SAFE_WEIGHTS_NAME,
    TORCH_WEIGHTS_NAME,
    packaged_models_dir,
    resolve_model_dir,
)
from albert.modeling.backbone import HEAD_NAMES, AlbertBackbone, init_weights
from albert.modeling.config import AlbertConfig, check_fits_memory

logger = logging.getLogger(__name__)

M = TypeVar("M", bound="AlbertPreTrainedModel")


class AlbertPreTrainedModel(nn.Module):
    """Shared plumbing: weight init, tying, and checkpoint I/O (transformers-compatible directories)."""

    base_model_prefix = "albert"
    # Parameters that alias others and are therefore not stored in a checkpoint.
    tied_keys: tuple[str, ...] = ()

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__()
        self.config = config

    def post_init(self) -> None:
        init_weights(self, self.config.initializer_range)
        self.tie_weights()

    def tie_weights(self) -> None:
        """Re-establish aliases after weights are replaced (loading, resizing)."""

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def head_modules(self) -> list[nn.Module]:
        """The task head's modules with parameters: everything outside the backbone."""
        return [m for name, m in self.named_children() if name in HEAD_NAMES and any(True for _ in m.parameters())]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())  # parameters() yields shared tensors once

    @classmethod
    def from_pretrained(cls: type[M], name_or_path: str | Path, **kwargs: Any) -> M:
        """Load a local directory, a packaged model name or a hub id; `kwargs` override config fields."""
        return load_pretrained(cls, name_or_path, **kwargs)

    def save_pretrained(self, directory: str | Path) -> None:
        """Write config.json + model.safetensors: a directory transformers loads unchanged."""
        save_pretrained(self, directory)


class AlbertModel(AlbertPreTrainedModel, AlbertBackbone):
    """The bare backbone; state-dict keys have no prefix (`embeddings.*`, `encoder.*`, `pooler.*`)."""

    base_model_prefix = ""

    def __init__(self, config: AlbertConfig, add_pooling_layer: bool = True) -> None:
        AlbertBackbone.__init__(self, config, add_pooling_layer)  # sets self.config
        self.post_init()

    forward = AlbertBackbone.forward


# Buffers that some transformers versions stored; they hold no learned state.
_IGNORED_KEYS = re.compile(r"(^|\.)embeddings\.(position_ids|token_type_ids)$")


def saved_architecture(name_or_path: str | Path) -> str | None:
    """The class a model directory was saved from (config.json's `architectures`), where it says."""
    config = AlbertConfig.from_json_file(resolve_model_dir(name_or_path) / CONFIG_NAME)
    return (config.extra.get("architectures") or [None])[0]


def saved_kind(name_or_path: str | Path) -> str | None:
    """The fine-tuning kind a directory records (config.albert_task's task; `albert finetune` writes it), if any."""
    config = AlbertConfig.from_json_file(resolve_model_dir(name_or_path) / CONFIG_NAME)
    task = config.albert_task.get("task") if isinstance(config.albert_task, dict) else None
    return task if isinstance(task, str) else None


# ----- reading -----
def read_state_dict(directory: Path) -> dict[str, torch.Tensor]:
    """Weights of a transformers directory: safetensors (single or sharded), else a torch .bin read safely."""
    for name in (SAFE_WEIGHTS_NAME, TORCH_WEIGHTS_NAME):
        if (directory / name).exists():
            require_file(directory / name)  # a FIFO or a device would hang or never end
    try:
        if (directory / SAFE_WEIGHTS_NAME).is_file():
            return load_file(directory / SAFE_WEIGHTS_NAME)
        if (directory / SAFE_INDEX_NAME).is_file():
            state: dict[str, torch.Tensor] = {}
            for shard in _shards(directory):
                state.update(load_file(shard))
            return state
        if (directory / TORCH_WEIGHTS_NAME).is_file():
            # weights_only: a checkpoint is data, never code to run.
            obj = torch.load(directory / TORCH_WEIGHTS_NAME, map_location="cpu", weights_only=True)
            if not isinstance(obj, dict) or not all(isinstance(k, str) and torch.is_tensor(v)
                                                    for k, v in obj.items()):
                raise CheckpointError(f"{directory / TORCH_WEIGHTS_NAME} does not hold a state dict (names → "
                                      "tensors)")
            return obj
    except pickle.UnpicklingError:
        raise CheckpointError(f"cannot read weights in {directory}: {TORCH_WEIGHTS_NAME} holds objects other than "
                              "tensors, and loading it could run code (refused)") from None
    except (SafetensorError, RuntimeError, KeyError, json.JSONDecodeError, EOFError) as e:
        raise CheckpointError(f"cannot read weights in {directory}: {str(e).splitlines()[0]}") from None
    raise CheckpointError(f"no weights in {directory} (looked for {SAFE_WEIGHTS_NAME}, {SAFE_INDEX_NAME}, "
                          f"{TORCH_WEIGHTS_NAME})")


def _shards(directory: Path) -> list[Path]:
    """The shard files a model.safetensors.index.json names, each a file inside the model directory (a name that
    leads outside it, through .. or a link, is refused: the directory's weights are its own)."""
    path = directory / SAFE_INDEX_NAME
    index = read_model_json(path)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in weight_map.items()):
        raise CheckpointError(f"{path}: 'weight_map' must be an object of weight names → shard file names")
    root = directory.resolve()
    shards = []
    for name in sorted(set(weight_map.values())):
        shard = (directory / name).resolve()
        if not shard.is_relative_to(root) or shard == root:
            raise CheckpointError(f"{path}: shard {name!r} is outside the model directory (refused)")
        require_file(shard)
        shards.append(shard)
    return shards


def check_weights(state: dict[str, torch.Tensor], source: str) -> None:
    """Every weight a floating-point tensor (integer weights, int8 quantized by another tool say, would load as
    their raw integers and answer nonsense) and finite (a NaN in one weight is NaN in every answer); the integer
    buffers some transformers versions stored (position ids) hold no learned state and pass."""
    wrong = [(k, v.dtype) for k, v in state.items() if not v.is_floating_point() and not _IGNORED_KEYS.search(k)]
    if wrong:
        more = f" and {len(wrong) - 1:,} more" if len(wrong) > 1 else ""
        raise CheckpointError(f"{source}: weight {wrong[0][0]} is {str(wrong[0][1]).removeprefix('torch.')}{more}; "
                              "albert reads floating-point weights (fp32, fp16, bf16) and quantizes itself "
                              "(--precision int8)")
    for name, tensor in state.items():
        if tensor.is_floating_point() and tensor.numel() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{source}: weight {name} holds NaN or infinite values; refused")


def adapt_keys(state: dict[str, torch.Tensor], prefix: str, expected: set[str]) -> dict[str, torch.Tensor]:
    """Add or strip the base-model prefix so a bare backbone and a head model load each other."""
    state = {k: v for k, v in state.items() if not _IGNORED_KEYS.search(k)}
    # Older checkpoints stored only the decoder's alias of the MLM bias.
    if "predictions.decoder.bias" in state and "predictions.bias" not in state:
        state["predictions.bias"] = state["predictions.decoder.bias"]
    if not prefix:  # loading into the bare AlbertModel: drop "albert." from a head checkpoint
        head_prefix = "albert."
        if any(k.startswith(head_prefix) for k in state):
            return {k[len(head_prefix):]: v for k, v in state.items() if k.startswith(head_prefix)} | {
                k: v for k, v in state.items() if not k.startswith(head_prefix)}
        return state
    p = prefix + "."
    if not any(k.startswith(p) for k in state):  # a bare backbone checkpoint loaded into a head model
        return {(p + k if p + k in expected else k): v for k, v in state.items()}
    return state


def _names(keys: list[str], listed: int = 8) -> str:
    """Weight names for a log line: each one where there are few, else grouped by their first three components (a
    layer group's 16 weights are one entry, not a screenful)."""
    if len(keys) <= listed:
        return ", ".join(keys)
    groups: dict[str, list[str]] = {}
    for key in keys:
        groups.setdefault(".".join(key.split(".")[:3]), []).append(key)
    return ", ".join(f"{p}.* ({len(ks)} weights)" if len(ks) > 1 else ks[0] for p, ks in groups.items())


def load_pretrained(cls: type[M], name_or_path: str | Path, *, dtype: torch.dtype | None = None,
                    config: AlbertConfig | None = None, allow_missing: Callable[[str], bool] | None = None,
                    fill_missing: Callable[[str], str | None] | None = None, **overrides: Any) -> M:
    """`allow_missing`: which weights the checkpoint may lack (None: any, each newly initialised with a warning);
    lacking another is a CheckpointError (a pipeline must not answer with a random head). `fill_missing`: for a
    weight the checkpoint lacks, the checkpoint's weight it starts as instead (None: none)."""
    directory = resolve_model_dir(name_or_path)
    if config is None:
        config = AlbertConfig.from_json_file(directory / CONFIG_NAME, strict=False)
    if overrides:
        import dataclasses

        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(config)} - {"extra"})
        if unknown:
            raise ConfigError(f"unknown config field(s) to override: {', '.join(unknown)} (an ALBERT config has "
                              f"{', '.join(f.name for f in dataclasses.fields(config) if f.name != 'extra')})")
        if "id2label" in overrides and "num_labels" not in overrides:
            overrides["label2id"] = None
        config = dataclasses.replace(config, **overrides)
    check_fits_memory(config)
    model = cls(config)
    state = read_state_dict(directory)
    if fill_missing is not None:
        own = model.state_dict()
        for key in own:
            source = fill_missing(key) if key not in state else None
            if source is not None and source in state:
                logger.info("%s starts as the checkpoint's %s", key, source)
                state[key] = state[source]
    load_state_into(model, state, allow_missing, source=str(name_or_path))
    if dtype is not None:
        model.to(dtype)
    model.eval()
    return model


def load_state_into(model: AlbertPreTrainedModel, state: dict[str, torch.Tensor],
                    allow_missing: Callable[[str], bool] | None = None, source: str = "the checkpoint"
                    ) -> dict[str, list[str]]:
    """Copy weights in, checking every shape; report (log and return) missing and unexpected keys. Missing
    weights that `allow_missing` refuses are a CheckpointError, raised before anything is copied."""
    own = model.state_dict()
    expected = set(own) - set(model.tied_keys)
    state = adapt_keys(state, model.base_model_prefix, expected)
    # A pooler is meaningless to task heads that do not use one (transformers drops it the same way).
    pooler_free = not any(".pooler." in k or k.startswith("pooler.") for k in own)
    unexpected = sorted(k for k in state if k not in own and not (pooler_free and "pooler" in k))
    missing = sorted(k for k in expected if k not in state)
    refused = [k for k in missing if allow_missing is not None and not allow_missing(k)]
    if refused:
        more = ", ..." if len(refused) > 3 else ""
        raise CheckpointError(f"{source} has no weights for {type(model).__name__}'s {', '.join(refused[:3])}{more}: "
                              f"not trained for this task (fine-tune it with `albert finetune`)")
    check_weights({k: state[k] for k in expected & set(state)}, source)
    for key in expected & set(state):
        if tuple(state[key].shape) != tuple(own[key].shape):
            raise CheckpointError(f"shape mismatch for {key}: checkpoint {tuple(state[key].shape)}, "
                                  f"model {tuple(own[key].shape)} (does the config match the weights?)")
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)
    model.tie_weights()
    if missing:
        logger.warning("%s: newly initialised (not in the checkpoint): %s", type(model).__name__, _names(missing))
    # Another ALBERT head's weights (a pretraining checkpoint loaded for fill-mask, say) are expected.
    other_heads = [k for k in unexpected if k.split(".")[0] in HEAD_NAMES]
    if other_heads:
        logger.info("%s: ignored weights of other heads: %s", type(model).__name__, _names(other_heads))
    if len(other_heads) < len(unexpected):
        logger.warning("%s: ignored checkpoint weights: %s", type(model).__name__,
                       _names([k for k in unexpected if k not in other_heads]))
    info = {"missing_keys": missing, "unexpected_keys": unexpected}
    model.loading_info = info  # type: ignore[assignment]
    return info


# ----- writing -----
def save_pretrained(model: AlbertPreTrainedModel, directory: str | Path) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = model.config
    extra = dict(config.extra)
    extra["architectures"] = [type(model).__name__]
    import dataclasses

    dataclasses.replace(config, extra=extra).to_json_file(directory / CONFIG_NAME)
    tied = set(model.tied_keys)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if k not in tied}
    tmp = directory / (SAFE_WEIGHTS_NAME + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, directory / SAFE_WEIGHTS_NAME)
