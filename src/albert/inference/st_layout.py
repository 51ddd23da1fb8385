"""The sentence-transformers directory layout, read and written without sentence-transformers itself.

    modules.json                 the pipeline: Transformer (the model, at "" or "0_Transformer"), Pooling, Normalize
    1_Pooling/config.json        how token vectors become one vector (cls, mean, max, mean_sqrt_len)
    2_Normalize/                 present: vectors are L2-normalised
    sentence_bert_config.json    max_seq_length
    config_sentence_transformers.json   similarity (cosine)

`SentenceTransformer(dir)` on a directory albert wrote gives albert's vectors (tests/test_interop.py), and albert
reads a sentence-transformers directory's pooling and normalisation as its defaults.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from albert.errors import CheckpointError
from albert.io.files import read_json

MODULES = "modules.json"
POOLINGS = ("cls", "mean", "max", "mean_sqrt_len")
DEFAULT_POOLING = "mean"  # sentence-transformers' own default for a plain transformers directory
_MODE_KEYS = {"cls": "pooling_mode_cls_token", "mean": "pooling_mode_mean_tokens", "max": "pooling_mode_max_tokens",
              "mean_sqrt_len": "pooling_mode_mean_sqrt_len_tokens"}
_OTHER_MODES = ("pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken")


@dataclass(frozen=True)
class SentenceLayout:
    model_dir: Path  # where the transformer's config, weights and tokenizer are
    pooling: str
    normalize: bool
    max_seq_length: int | None = None


def read_layout(directory: Path) -> SentenceLayout | None:
    """The sentence-transformers layout of `directory`, or None for a plain model directory."""
    modules_file = directory / MODULES
    if not modules_file.is_file():
        return None
    modules = read_json(modules_file)
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise CheckpointError(f"{modules_file}: expected a list of modules")
    by_type = {str(m.get("type", "")).rsplit(".", 1)[-1]: m for m in modules}
    transformer = by_type.get("Transformer")
    if transformer is None:
        raise CheckpointError(f"{modules_file}: no Transformer module (not a text model albert can run)")
    model_dir = directory / str(transformer.get("path", ""))
    pooling = DEFAULT_POOLING
    if "Pooling" in by_type:
        config_file = directory / str(by_type["Pooling"].get("path", "1_Pooling")) / "config.json"
        config = read_json(config_file) if config_file.is_file() else {}
        named = config.get("pooling_mode")  # sentence-transformers 6: a name (or names); earlier: one flag each
        if named is not None:
            names = [named] if isinstance(named, str) else list(named) if isinstance(named, list) else []
            modes = [{"mean_sqrt_len_tokens": "mean_sqrt_len"}.get(str(n), str(n)) for n in names]
            if any(m not in POOLINGS for m in modes):
                raise CheckpointError(f"{config_file}: pooling {named} is not supported; albert pools by one of "
                                      f"{', '.join(POOLINGS)}")
        else:
            modes = [name for name, key in _MODE_KEYS.items() if config.get(key)]
        if any(config.get(key) for key in _OTHER_MODES) or len(modes) != 1:
            raise CheckpointError(f"{config_file}: pooling {', '.join(modes) or 'none'} with others is not supported; "
                                  f"albert pools by one of {', '.join(POOLINGS)}")
        pooling = modes[0]
    unsupported = sorted(set(by_type) - {"Transformer", "Pooling", "Normalize"})
    if unsupported:
        raise CheckpointError(f"{modules_file}: modules {', '.join(unsupported)} are not supported (albert runs "
                              "Transformer, Pooling and Normalize)")
    length = None
    bert_config = model_dir / "sentence_bert_config.json"
    if bert_config.is_file():
        value = read_json(bert_config).get("max_seq_length")
        length = value if isinstance(value, int) and value > 0 else None
    return SentenceLayout(model_dir, pooling, "Normalize" in by_type, length)


def write_layout(directory: Path, hidden_size: int, pooling: str, normalize: bool, max_seq_length: int) -> None:
    """Add the sentence-transformers files to a model directory (its weights and tokenizer at the root)."""
    modules: list[dict[str, Any]] = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (directory / "2_Normalize").mkdir(exist_ok=True)
    (directory / MODULES).write_text(json.dumps(modules, indent=2) + "\n", encoding="utf-8")
    modes = {key: name == pooling for name, key in _MODE_KEYS.items()} | {key: False for key in _OTHER_MODES}
    pooling_config = {"word_embedding_dimension": hidden_size, **modes, "include_prompt": True}
    (directory / "1_Pooling").mkdir(exist_ok=True)
    (directory / "1_Pooling" / "config.json").write_text(json.dumps(pooling_config, indent=2) + "\n", encoding="utf-8")
    (directory / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False}, indent=2) + "\n", encoding="utf-8")
    (directory / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": {}, "default_prompt_name": None, "similarity_fn_name": "cosine"}, indent=2) + "\n",
        encoding="utf-8")
