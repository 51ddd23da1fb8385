"""Run settings: typed dataclasses; a YAML file and `--key value` overrides are just ways to fill one."""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from albert.errors import ConfigError
from albert.modeling.config import MIN_SEQ_LENGTH

S = TypeVar("S")



# the largest integer setting: counts of steps, texts and tokens fit far below it, and it keeps every one of them a
# 32-bit integer wherever numpy, torch or a thread pool takes it
MAX_INTEGER_SETTING = 2**31 - 1


def setting(default: Any, help: str, at_most: int = MAX_INTEGER_SETTING, at_least: int = 0) -> Any:
    """A settings field with its one line of meaning beside it (`--help` shows it); `at_most`, `at_least`: a number
    setting's bounds. A dataclass default is a group of settings of its own (`--group.name value`)."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"help": help})
    if dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda: dataclasses.replace(default),  # type: ignore[type-var]
                                 metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help, "at_most": at_most, "at_least": at_least})


@dataclass
class TrainSettings:
    """What every run of the training loop needs (pretraining and fine-tuning alike)."""

    run_dir: str = setting("runs/run", "directory for settings, metrics.jsonl, checkpoints and the final model")
    seed: int = setting(0, "seed for initialisation, data order and masking")
    batch_size: int = setting(64, "sequences per optimizer step, all processes and accumulation together")
    micro_batch_size: int = setting(0, "sequences per forward pass per process; 0: batch_size / processes")
    max_steps: int = setting(1000, "optimizer steps the schedule spans")
    stop_after: int = setting(0,
                              "end this run at this step, checkpointed (the schedule still spans max_steps); 0: never")
    optimizer: Literal["lamb", "adamw", "adamw_original"] = setting(
        "lamb",
        "lamb (the paper's), adamw, or adamw_original (BERT's: no bias correction)")
    learning_rate: float = setting(0.00176, "peak learning rate, reached after warm-up")
    warmup_steps: int = setting(0, "steps of linear warm-up from 0")
    warmup_fraction: float = setting(0.0, "warm-up as a fraction of max_steps, used when warmup_steps is 0")
    decay: Literal["linear", "polynomial", "cosine", "constant", "one_cycle"] = setting(
        "linear",
        "learning-rate decay after warm-up (one_cycle: from the peak at the warm-up's end down to 0 at the last step)")
    decay_power: float = setting(1.0, "exponent of the polynomial decay")
    weight_decay: float = setting(0.01, "decoupled weight decay (not on biases and LayerNorm weights)")
    beta1: float = setting(0.9, "the optimizer's first-moment decay")
    beta2: float = setting(0.999, "the optimizer's second-moment decay")
    eps: float = setting(1e-6, "the optimizer's epsilon")
    max_grad_norm: float = setting(1.0, "clip the global gradient norm to this; 0: no clipping")
    precision: Literal["auto", "bf16", "fp32"] = setting("auto",
                                                         "auto: bf16 where the device has bf16 matrix units (GPUs, "
                                                         "AMX/AVX512-BF16 CPUs), else fp32")
    device: str = setting("auto", "auto, cpu, cuda or cuda:N")
    num_threads: int = setting(0, "CPU threads for torch; 0: torch's default", at_most=1024)
    logger: Literal["jsonl", "tensorboard"] = setting("jsonl",
                                                      "jsonl: metrics.jsonl only; tensorboard: also TensorBoard event "
                                                      "files in RUN_DIR/tensorboard")
    log_every: int = setting(10, "steps between progress-bar updates (every step is recorded in metrics.jsonl)")
    eval_every: int = setting(500, "steps between evaluations")
    save_every: int = setting(500, "steps between checkpoints")
    keep_checkpoints: int = setting(3, "checkpoints kept (older ones are removed)")
    on_nonfinite: Literal["stop", "skip"] = setting("stop", "a non-finite loss: stop the run, or skip that step")
    progress: bool = setting(True, "show a progress bar")
    compile: bool = setting(False,
                            "run the step's forward and backward under torch.compile (compiles once; the same loss)")
    time_budget_minutes: float = setting(0.0,
                                         "end the run when this much wall time is spent, the schedule following "
                                         "whichever of steps and time is further along (0: steps only)")

    def __post_init__(self) -> None:
        check_numbers(self)
        from albert.train.loggers import check_logger

        check_logger(self.logger)  # tensorboard missing: said before the data is read, not after
        if self.stop_after < 0:
            raise ConfigError("stop_after must be >= 0")
        for name in ("batch_size", "max_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.micro_batch_size < 0:
            raise ConfigError(f"micro_batch_size must be >= 0, got {self.micro_batch_size}")
        if not 0 <= self.warmup_fraction < 1:
            raise ConfigError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        for name in ("beta1", "beta2"):  # decays of the optimizer's moments: 1 or more never forgets, or grows
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name):.3g}")

    @property
    def total_warmup(self) -> int:
        return self.warmup_steps or int(self.warmup_fraction * self.max_steps)


@dataclass
class PretrainSettings(TrainSettings):
    data: str = setting("", "a directory made by `albert data prepare`")
    model: str = setting("albert-base-v2", "the model's shape: a preset name or a config.json")
    model_overrides: dict[str, Any] = setting({}, "config fields replaced in the model's config (a mapping)")
    init_from: str = setting("", "start from these weights instead of a random initialisation")
    max_seq_length: int = setting(128, "tokens per sequence at most", at_least=MIN_SEQ_LENGTH)
    short_seq_prob: float = setting(0.1, "fraction of examples made shorter than max_seq_length (the paper's 10%)")
    masked_lm_prob: float = setting(0.15, "fraction of tokens masked for MLM")
    max_predictions_per_seq: int = setting(20, "masked positions per sequence at most")
    max_ngram: int = setting(3, "longest n-gram masked as one unit (the paper's 3)")
    sop_weight: float = setting(1.0,
                                "weight of the sentence-order loss beside the MLM loss (0: MLM only, SOP still scored)")
    packing: bool = setting(False,
                            "pack several short examples into each row (attention and positions per example) instead "
                            "of padding")
    batch_ramp_steps: int = setting(0,
                                    "grow the batch linearly over these first steps, each step's share rounded up to "
                                    "whole micro-batches; 0: no ramp")
    batch_ramp_from: float = setting(0.25, "the ramp's first batch, as a fraction of batch_size")
    document_order: Literal["shuffled", "sequential"] = setting(
        "shuffled",
        "shuffled: documents in a seeded random order; sequential: in corpus order")
    eval_examples: int = setting(2000, "held-out examples in each evaluation")
    data_workers: int = setting(0,
                                "processes that mask and collate the coming batches while the model trains (same "
                                "batches)")

    def __post_init__(self) -> None:
        super().__post_init__()
        from albert.data.pretraining import ExampleSettings

        ExampleSettings(self.max_seq_length, self.short_seq_prob, self.masked_lm_prob, self.max_predictions_per_seq,
                        self.max_ngram)  # its checks, before any data is read
        if not self.data:
            raise ConfigError("data is required: a directory made by `albert data prepare`")
        if self.data_workers < 0:
            raise ConfigError(f"data_workers must be >= 0, got {self.data_workers}")
        if not 0 < self.batch_ramp_from <= 1:
            raise ConfigError(f"batch_ramp_from must be in (0, 1], got {self.batch_ramp_from}")


def check_numbers(settings: Any) -> None:
    """Every count is >= 0 (or its field's `at_least`) and every number finite: a negative or NaN setting is an
    error, not a silent loop."""
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{f.name} must be a finite number, got {value}")
        at_least = f.metadata.get("at_least", 0)
        if value < at_least:
            raise ConfigError(f"{f.name} must be >= {at_least}, got {value}")
        at_most = f.metadata.get("at_most", MAX_INTEGER_SETTING)
        if isinstance(value, int) and value > at_most:
            raise ConfigError(f"{f.name} must be at most {at_most:,}, got {value:.3g}")


def _coerce(value: Any, tp: Any, name: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{name} must be one of {', '.join(map(str, typing.get_args(tp)))}; got {value!r}")
        return value
    if origin in (types.UnionType, typing.Union):
        return value
    if tp is bool:
        if isinstance(value, str):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name} must be true or false; got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{name} must be an integer; got {value!r}")
        if isinstance(value, int):
            return value
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be an integer; got {value!r}") from None
        if not math.isfinite(f) or f != int(f):
            raise ConfigError(f"{name} must be an integer; got {value!r}")
        return int(f)
    if tp is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number; got {value!r}") from None
    if tp is str:
        return str(value)
    if origin is list:  # (of strings: paths)
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name} must be a path or a list of paths; got {str(value)[:80]!r}")
        return value
    if origin is dict:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise ConfigError(f"{name} must be a JSON object; got {value!r}") from None
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be a mapping; got {value!r}")
        return value
    return value


def _groups(cls: type) -> dict[str, type]:
    """The fields of `cls` that are groups of settings (dataclasses), by name."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)  # type: ignore[arg-type]
            if dataclasses.is_dataclass(hints[f.name])}


def _gather_groups(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """`values` with each group's settings built into its dataclass: from a mapping under the group's name, from
    `group.name` keys, and from a group's setting named alone (flat, as before groups)."""
    values = dict(values)
    top = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for group, group_cls in _groups(cls).items():
        given = values.pop(group, None)
        if given is not None and not isinstance(given, dict) and not dataclasses.is_dataclass(given):
            raise ConfigError(f"{group} must be a mapping of settings; got {given!r}")
        if dataclasses.is_dataclass(given):
            values[group] = given
            continue
        mine = {f.name for f in dataclasses.fields(group_cls)}
        sub = dict(given or {})
        for key in [k for k in values if k.startswith(group + ".") or (k in mine and k not in top)]:
            sub[key.removeprefix(group + ".")] = values.pop(key)
        values[group] = build_settings(group_cls, sub)
    return values


def flat_settings(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """`cls`'s settings as one level of names (each group's mapping spread out): how a run saved before groups
    and one saved after them compare."""
    groups = _groups(cls)
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if key in groups and isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    return flat


def build_settings(cls: type[S], values: dict[str, Any]) -> S:
    """Fill `cls` from a dict; unknown keys are errors, values are converted to the field types."""
    values = _gather_groups(cls, values)
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
    try:
        return cls(**{k: _coerce(v, hints[k], k) for k, v in values.items()})
    except TypeError as e:
        raise ConfigError(str(e)) from None


MAX_SETTINGS_BYTES = 16 * 1024 * 1024  # a settings file is a page of YAML; a bigger one is not one


def read_settings_file(path: str | Path) -> dict[str, Any]:
    """A YAML mapping of settings: a regular file (a FIFO or a device is refused by its type, before it is opened)
    of at most MAX_SETTINGS_BYTES, safe YAML (no tags that build objects), nesting of sane depth."""
    from albert.io.files import require_file

    p = Path(path)
    if not p.exists() and not p.is_symlink():
        raise ConfigError(f"settings file not found: {p}")
    require_file(p)
    if p.stat().st_size > MAX_SETTINGS_BYTES:
        raise ConfigError(f"{p}: {p.stat().st_size:,} bytes; a settings file is at most {MAX_SETTINGS_BYTES:,}")
    try:
        loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except RecursionError:
        raise ConfigError(f"{p}: nested too deep (thousands of levels); a settings file is a flat mapping") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p} is not UTF-8 text (byte {e.start})") from None
    except yaml.YAMLError as e:  # a python/... tag too: safe_load refuses it, nothing runs
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{p} is not a settings file albert reads: {' '.join(str(problem).split())}{where}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{p} must hold a mapping of settings")
    return loaded


def load_settings(cls: type[S], path: str | Path | None, overrides: dict[str, Any] | None = None) -> S:
    """A settings file (YAML) with `overrides` on top; unknown keys are errors."""
    return build_settings(cls, {**(read_settings_file(path) if path else {}), **(overrides or {})})


def parse_value(raw: str) -> Any:
    """A setting's value as given on the command line, read as YAML reads it ("5" → 5, "[a, b]" → a list); text
    that is not YAML stays text."""
    if raw == "":
        return ""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


@dataclass(frozen=True)
class Flag:
    """A setting as a command-line flag: the key it sets, its option strings, a metavar, one value or several."""

    key: str
    options: tuple[str, ...]
    metavar: str
    many: bool
    help: str


def setting_flags(cls: type) -> list[Flag]:
    """Every setting of `cls` as a flag, generated from the fields so that the flags, the YAML keys and the help
    cannot drift apart: `--name`; a group's setting `--group.name`, and `--name` alone where no other setting has
    that name (as it was given before groups)."""
    groups = _groups(cls)
    hints = typing.get_type_hints(cls)
    flags = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in groups:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc,operator]
        flags.append(Flag(f.name, (f"--{f.name}",), _metavar(hints[f.name]), typing.get_origin(hints[f.name]) is list,
                          f"{field_help(cls, f.name)} (default {default!r})"))
    top = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    names = [x.key for group_cls in groups.values() for x in setting_flags(group_cls)]
    for group, group_cls in groups.items():
        for x in setting_flags(group_cls):
            alone = (f"--{x.key}",) if x.key not in top and names.count(x.key) == 1 else ()
            flags.append(Flag(f"{group}.{x.key}", (f"--{group}.{x.key}", *alone), x.metavar, x.many,
                              f"{group}: {x.help}"))
    return flags


def _metavar(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "{" + ",".join(map(str, typing.get_args(tp))) + "}"
    if typing.get_origin(tp) is list:
        return "PATH"
    if typing.get_origin(tp) is dict:
        return "MAPPING"
    return {int: "INT", float: "NUMBER", bool: "BOOL"}.get(tp, "TEXT")


def save_settings(settings: Any, path: Path) -> None:
    path.write_text(yaml.safe_dump(dataclasses.asdict(settings), sort_keys=False), encoding="utf-8")


def field_help(cls: type, name: str) -> str:
    """A setting's line of help: its own, or that of the field it redefines (a subclass's other default)."""
    for klass in cls.__mro__:
        for f in dataclasses.fields(klass) if dataclasses.is_dataclass(klass) else ():
            if f.name == name and f.metadata.get("help"):
                return str(f.metadata["help"])
    return ""


class HasRunDir(typing.Protocol):
    out: str
    run_dir: str


def run_dir_of(settings: HasRunDir) -> Path:
    """Where a fine-tuning or distillation run keeps its training state (checkpoints, metrics): --run_dir, else
    --out's name + '-run' beside it, so that --out holds only the model."""
    out = Path(settings.out)
    return Path(settings.run_dir) if settings.run_dir else out.with_name(out.name + "-run")
