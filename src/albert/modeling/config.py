"""AlbertConfig: one dataclass, the eight official presets, and transformers' config.json on disk."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from albert.errors import ConfigError
from albert.io.files import read_model_json

MIN_SEQ_LENGTH = 8  # the shortest sequence a run takes: [CLS], one or two [SEP]s and a few tokens of text

logger = logging.getLogger(__name__)

ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu", "swish", "tanh")

# Keys that transformers' PretrainedConfig writes into every config.json. They carry no meaning
# for the ALBERT architecture, so they are accepted and dropped (kept only to write them back).
_TRANSFORMERS_GENERIC_KEYS = frozenset(
    {
        "architectures", "model_type", "transformers_version", "torch_dtype", "dtype",
        "output_attentions", "output_hidden_states", "return_dict", "use_return_dict", "is_encoder_decoder",
        "is_decoder", "add_cross_attention", "tie_word_embeddings", "tie_encoder_decoder", "chunk_size_feed_forward",
        "pruned_heads", "torchscript", "use_bfloat16", "tf_legacy_loss", "cross_attention_hidden_size",
        "finetuning_task", "tokenizer_class", "prefix", "sep_token_id", "decoder_start_token_id",
        "task_specific_params", "_name_or_path", "_attn_implementation_autoset", "_commit_hash",
        "max_length", "min_length", "do_sample", "early_stopping", "num_beams", "num_beam_groups",
        "diversity_penalty", "temperature", "top_k", "top_p", "typical_p", "repetition_penalty",
        "length_penalty", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size", "bad_words_ids",
        "num_return_sequences", "output_scores", "return_dict_in_generate", "forced_bos_token_id",
        "forced_eos_token_id", "remove_invalid_values", "exponential_decay_length_penalty",
        "suppress_tokens", "begin_suppress_tokens", "use_cache", "gradient_checkpointing",
        "down_scale_factor", "gap_size", "num_memory_blocks", "layers_to_keep",
    }
)



MAX_LAYER_PASSES = 1024
MAX_POSITIONS = 1 << 16


# the JSON kind of each config field (AlbertConfig._check_types); _OPTIONAL ones may also be null
_FIELD_KINDS = {
    **dict.fromkeys(("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "num_hidden_groups",
                     "num_attention_heads", "intermediate_size", "inner_group_num", "max_position_embeddings",
                     "type_vocab_size", "pad_token_id", "bos_token_id", "eos_token_id", "num_labels"), "int"),
    **dict.fromkeys(("hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "layer_norm_eps",
                     "classifier_dropout_prob"), "float"),
    **dict.fromkeys(("hidden_act", "position_embedding_type", "problem_type", "early_exit"), "str"),
    "id2label": "labels", "label2id": "ids", "albert_task": "dict",
}
_OPTIONAL = {"classifier_dropout_prob", "id2label", "label2id", "problem_type", "albert_task", "early_exit",
             "bos_token_id", "eos_token_id"}
_KIND_NAMES = {"int": "an integer", "float": "a finite number", "str": "a string",
               "labels": "an object of label names keyed by their ids (\"0\", \"1\", ...)",
               "ids": "an object of label ids keyed by their names", "dict": "an object"}


def _is_index(value: Any) -> bool:
    """A label id as JSON writes it: a whole number >= 0, or a string of one."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return 0 <= value < 2**31
    return isinstance(value, str) and value.isdigit() and len(value) < 10


def check_fits_memory(config: AlbertConfig, bytes_per_weight: int = 4) -> None:
    """A ConfigError, before anything is allocated, when the config's weights alone exceed this machine's memory
    (a config file with vocab_size 10^12 would otherwise fail deep inside torch, or swap for minutes)."""
    need = config.parameter_count() * bytes_per_weight
    have = _available_memory()
    if have is not None and need > have:
        raise ConfigError(f"the config's weights need {need / 2**30:,.1f} GiB ({config.parameter_count():,} "
                          f"parameters in fp32); this machine has {have / 2**30:,.1f} GiB available")


def _available_memory() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


@dataclass
class AlbertConfig:
    """Every field of transformers' AlbertConfig, with its defaults (those of albert-xxlarge-v2)."""

    vocab_size: int = 30000
    embedding_size: int = 128
    hidden_size: int = 4096
    num_hidden_layers: int = 12
    num_hidden_groups: int = 1
    num_attention_heads: int = 64
    intermediate_size: int = 16384
    inner_group_num: int = 1
    hidden_act: str = "gelu_new"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    classifier_dropout_prob: float | None = 0.1  # None: hidden_dropout_prob (as transformers' token head)
    position_embedding_type: str = "absolute"
    pad_token_id: int = 0
    bos_token_id: int = 2
    eos_token_id: int = 3
    num_labels: int = 2
    id2label: dict[int, str] | None = None
    label2id: dict[str, int] | None = None
    problem_type: str | None = None
    # What the checkpoint was fine-tuned for (see albert.tasks); None for pretrained backbones.
    albert_task: dict[str, Any] | None = None
    # A classifier after every pass of the shared layer (albert.modeling.early_exit): "shared" (the one classifier after
    # each) or "per_pass" (one each); None: the classifier reads the last pass only, as in every ALBERT
    early_exit: str | None = None
    # transformers' generic keys read from a config.json, written back unchanged.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._check_types()
        if self.id2label is not None:
            self.id2label = {int(k): str(v) for k, v in self.id2label.items()}
            self.num_labels = len(self.id2label)
            if sorted(self.id2label) != list(range(self.num_labels)):
                raise ConfigError(f"id2label must number the labels 0 to {self.num_labels - 1}, got keys "
                                  f"{sorted(self.id2label)[:5]}")
            if self.label2id is None:
                self.label2id = {v: k for k, v in self.id2label.items()}
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ConfigError(f"pad_token_id {self.pad_token_id} is not an id of the vocabulary (0 to "
                              f"{self.vocab_size - 1})")
        for name in ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "num_hidden_groups",
                     "num_attention_heads", "intermediate_size", "inner_group_num", "max_position_embeddings",
                     "type_vocab_size"):
            value = getattr(self, name)  # an integer: _check_types said so
            if value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size ({self.hidden_size}) is not divisible by num_attention_heads "
                f"({self.num_attention_heads})"
            )
        if self.num_hidden_layers % self.num_hidden_groups:
            raise ConfigError(
                f"num_hidden_layers ({self.num_hidden_layers}) is not divisible by num_hidden_groups "
                f"({self.num_hidden_groups})"
            )
        if self.hidden_act not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {self.hidden_act!r}; expected one of {', '.join(ACTIVATIONS)}")
        if self.position_embedding_type != "absolute":
            raise ConfigError(
                f"position_embedding_type {self.position_embedding_type!r} is not supported; ALBERT uses 'absolute'"
            )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout_prob"):
            p = getattr(self, name)
            if p is None and name == "classifier_dropout_prob":
                continue
            if not 0.0 <= float(p) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {p!r}")
        if self.early_exit not in (None, "shared", "per_pass"):
            raise ConfigError(f"early_exit must be 'shared', 'per_pass' or null, got {self.early_exit!r}")
        if self.num_labels < 1:
            raise ConfigError(f"num_labels must be >= 1, got {self.num_labels}")
        if self.problem_type not in (None, "regression", "single_label_classification",
                                     "multi_label_classification"):
            raise ConfigError(f"unknown problem_type {self.problem_type!r}")
        # a layer pass costs compute, not memory (the layer is shared): a huge count would run for hours
        if self.num_hidden_layers > MAX_LAYER_PASSES:
            raise ConfigError(f"num_hidden_layers {self.num_hidden_layers:,} is beyond {MAX_LAYER_PASSES:,} passes "
                              "of the shared layer (the paper's models have 12 or 24)")
        if self.max_position_embeddings > MAX_POSITIONS:
            raise ConfigError(f"max_position_embeddings {self.max_position_embeddings:,} is beyond {MAX_POSITIONS:,} "
                              "(attention is quadratic in it)")

    def _check_types(self) -> None:
        """Every field of the JSON type its annotation says (a config.json is user input): one ConfigError naming
        the field, never a TypeError deep inside torch."""
        for f in dataclasses.fields(self):
            value, kind = getattr(self, f.name), _FIELD_KINDS.get(f.name)
            if kind is None or (value is None and f.name in _OPTIONAL):
                continue
            ok = {"int": isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**53,
                  "float": isinstance(value, (int, float)) and not isinstance(value, bool)
                  and math.isfinite(value),
                  "str": isinstance(value, str),
                  "labels": isinstance(value, dict) and all(isinstance(v, str) and _is_index(k)
                                                             for k, v in value.items()),
                  "ids": isinstance(value, dict) and all(isinstance(k, str) and _is_index(v) for k, v in value.items()),
                  "dict": isinstance(value, dict)}[kind]
            if not ok:
                shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:30] + "..."
                raise ConfigError(f"config field {f.name!r} must be {_KIND_NAMES[kind]}, got {shown}")
        architectures = self.extra.get("architectures")
        if architectures is not None and not (isinstance(architectures, list)
                                              and all(isinstance(a, str) for a in architectures)):
            raise ConfigError("config field 'architectures' must be a list of class names")

    def parameter_count(self) -> int:
        """The weights this config allocates (shared layer groups counted once), without allocating them."""
        E, H, intermediate = self.embedding_size, self.hidden_size, self.intermediate_size
        embeddings = (self.vocab_size + self.max_position_embeddings + self.type_vocab_size) * E + 2 * E
        layer = 4 * (H * H + H) + 2 * H + (H * intermediate + intermediate) + (intermediate * H + H) + 2 * H
        heads = H * H + H + E * H + E + 2 * E + self.vocab_size + 2 * H + max(self.num_labels, 2) * H
        return embeddings + E * H + H + self.num_hidden_groups * self.inner_group_num * layer + heads

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def head_dropout(self) -> float:
        """The dropout before task heads."""
        return self.hidden_dropout_prob if self.classifier_dropout_prob is None else self.classifier_dropout_prob

    # ----- presets -----
    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> AlbertConfig:
        """One of the official names (`albert-base-v2`, `albert/albert-large-v1`, ...) or a small test preset."""
        key = name.removeprefix("albert/")
        if key not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}")
        return dataclasses.replace(cls(**PRESETS[key]), **overrides)

    # ----- dict / JSON -----
    @classmethod
    def from_dict(cls, data: dict[str, Any], strict: bool = True) -> AlbertConfig:
        """Build from a transformers-style dict; transformers' generic keys are kept aside. Unknown keys are
        errors, or (strict=False, for config.json files of checkpoints) kept aside with a warning."""
        data = dict(data)
        model_type = data.pop("model_type", "albert")
        if model_type != "albert":
            raise ConfigError(f"not an ALBERT config (model_type={model_type!r})")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        structure = data.pop("net_structure_type", 0)
        if structure not in (0, None):
            raise ConfigError(f"net_structure_type={structure} is not supported (only the standard ALBERT, 0)")
        extra = {k: data.pop(k) for k in list(data) if k in _TRANSFORMERS_GENERIC_KEYS}
        unknown = sorted(set(data) - names)
        if unknown and strict:
            raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
        if unknown:
            logger.warning("config: keeping unknown key(s) aside: %s", ", ".join(unknown))
            extra.update({k: data.pop(k) for k in unknown})
        return cls(**data, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if f.name in ("id2label", "label2id", "problem_type", "albert_task", "early_exit") and value is None:
                continue
            out[f.name] = value
        if self.id2label is not None:
            out["id2label"] = {str(k): v for k, v in self.id2label.items()}
        out["model_type"] = "albert"
        return out

    @classmethod
    def from_json_file(cls, path: str | Path, strict: bool = True) -> AlbertConfig:
        path = Path(path)
        if not path.exists() and not path.is_symlink():
            raise ConfigError(f"config file not found: {path}")
        data = read_model_json(path)
        if not isinstance(data, dict):
            raise ConfigError(f"{path} does not hold a JSON object")
        try:
            return cls.from_dict(data, strict=strict)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None

    def to_json_file(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")


def forward_flops(config: AlbertConfig, batch: int, seq: int, predictions: int = 0) -> float:
    """Model FLOPs of one forward pass over batch × seq positions (2 per multiply-add): the embedding projection,
    every layer pass's Q/K/V/output projections, FFN, attention scores and mixing, and the MLM head at
    `predictions` positions in all. A training step is 3× this (backward ≈ 2× forward), the usual convention for
    model FLOPs utilisation; pretraining's last pass computes only the masked rows, so the hardware does a little
    less than this counts (about 1/num_hidden_layers of the encoder)."""
    H, E, inner, L = config.hidden_size, config.embedding_size, config.intermediate_size, config.num_hidden_layers
    per_position = 2 * E * H + (2 * (4 * H * H + 2 * H * inner) + 2 * 2 * seq * H) * L
    return float(batch * seq * per_position + 2 * (H * E + E * config.vocab_size) * predictions)


def _official(hidden: int, layers: int, heads: int, act: str, dropout: float) -> dict[str, Any]:
    return dict(
        vocab_size=30000, embedding_size=128, hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, intermediate_size=4 * hidden, hidden_act=act,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
    )


PRESETS: dict[str, dict[str, Any]] = {
    "albert-base-v1": _official(768, 12, 12, "gelu", 0.1),
    "albert-large-v1": _official(1024, 24, 16, "gelu", 0.1),
    "albert-xlarge-v1": _official(2048, 24, 16, "gelu", 0.1),
    "albert-xxlarge-v1": _official(4096, 12, 64, "gelu", 0.0),
    "albert-base-v2": _official(768, 12, 12, "gelu_new", 0.0),
    "albert-large-v2": _official(1024, 24, 16, "gelu_new", 0.0),
    "albert-xlarge-v2": _official(2048, 24, 16, "gelu_new", 0.0),
    "albert-xxlarge-v2": _official(4096, 12, 64, "gelu_new", 0.0),
    # Small shapes for tests and for models trained on one machine.
    "albert-tiny": dict(vocab_size=1000, embedding_size=32, hidden_size=64, num_hidden_layers=4,
                        num_attention_heads=4, intermediate_size=128, hidden_act="gelu_new",
                        max_position_embeddings=128),
    "albert-small": dict(vocab_size=16000, embedding_size=128, hidden_size=384, num_hidden_layers=12,
                         num_attention_heads=6, intermediate_size=1536, hidden_act="gelu_new"),
}
