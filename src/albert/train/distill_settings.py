"""`albert distill`'s settings: what every kind reads, and each kind's own (albert.train.distill)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from albert.errors import ConfigError
from albert.modeling.config import MIN_SEQ_LENGTH
from albert.train.settings import TrainSettings, check_numbers, setting


@dataclass
class VectorSettings:
    """--kind sentence-vectors: the texts, the teacher's cached vectors and the loss's terms."""

    max_texts: int = setting(200_000, "texts drawn from --data: paragraphs, and one sentence of some as short texts")
    short_share: float = setting(0.5, "the share of paragraphs that also give one of their sentences as a short text")
    min_words: int = setting(8, "paragraphs of fewer words are skipped (a WordNet gloss has 3 to 8)")
    eval_texts: int = setting(2000, "texts held out from training, for the evaluation's agreement with the teacher")
    similarity_weight: float = setting(0.0, "weight of the in-batch similarity term beside the MSE (0: MSE only)")
    relation_weight: float = setting(0.0, "weight of the relation term beside the MSE: each text's similarities to the "
                                          "batch's other texts, as a softmax at --temperature, match the teacher's "
                                          "(KL; 0: none)")
    neighbour_batches: bool = setting(False, "batches of texts near each other by the teacher's vectors (spherical "
                                             "k-means) instead of random ones: the relation term then weighs fine "
                                             "distinctions")
    temperature: float = setting(0.05, "the in-batch similarity and relation terms' softmax temperature")
    cache_dir: str = setting("", "where the teacher's vectors are kept (under teacher-vectors/); '' is $ALBERT_CACHE "
                                 "or ~/.cache/albert")

    def __post_init__(self) -> None:
        check_numbers(self)
        if not 0 <= self.short_share <= 1:
            raise ConfigError(f"short_share must be in [0, 1], got {self.short_share}")
        if self.min_words < 1:
            raise ConfigError(f"min_words must be >= 1, got {self.min_words}")
        if self.max_texts <= self.eval_texts:
            raise ConfigError(f"max_texts ({self.max_texts}) must exceed eval_texts ({self.eval_texts})")
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")


@dataclass
class SoftTargetSettings:
    """--kind masked-lm and --kind task: the teacher's softened distributions beside the true labels."""

    kd_weight: float = setting(0.9, "the soft targets' share of the loss (the rest: the true labels)")
    kd_temperature: float = setting(2.0, "the softmax temperature of the soft targets")
    eval_examples: int = setting(2000, "masked-lm: held-out sequences in each evaluation")

    def __post_init__(self) -> None:
        check_numbers(self)
        if not 0 <= self.kd_weight <= 1:
            raise ConfigError(f"kd_weight must be in [0, 1], got {self.kd_weight}")
        if self.kd_temperature <= 0:
            raise ConfigError(f"kd_temperature must be > 0, got {self.kd_temperature}")


@dataclass
class DistillSettings(TrainSettings):
    """What every kind reads, and each kind's own settings in a group of their own (`vectors`, `soft`). A group's
    setting is given as `--vectors.max_texts 1000`, as a mapping in YAML (`vectors: {max_texts: 1000}`), or by its
    name alone (`--max_texts 1000`, `max_texts: 1000`), as before the groups."""

    kind: Literal["sentence-vectors", "masked-lm", "task"] = setting(
        "sentence-vectors", "sentence-vectors: the teacher's sentence vectors; masked-lm: an ALBERT teacher's "
                            "masked-token distributions; task: a fine-tuned teacher's soft labels (same vocabulary)")
    teacher: str = setting("", "sentence-vectors: a sentence-transformers directory, or an albert model (its mean "
                               "vectors); masked-lm: an albert pretraining model; task: a fine-tuned directory")
    teacher_licence: str = setting("", "the teacher's licence, written into the student's model card")
    student: str = setting("", "the albert model directory (or packaged name) the student starts from")
    student_overrides: dict[str, Any] = setting({}, "config fields replaced in the student's config, e.g. "
                                                    "'{\"num_hidden_layers\": 6}' for half the passes")
    data: list[str] = setting([], "sentence-vectors: text files (a paragraph per line, a blank line between "
                                  "documents); masked-lm: a directory made by `albert data prepare`; task: the "
                                  "training file, then optionally the dev file")
    out: str = setting("", "the student's directory (new), written at the end")
    max_seq_length: int = setting(128, "tokens per text at most, for student and teacher",
                                  at_least=MIN_SEQ_LENGTH)
    vectors: VectorSettings = setting(VectorSettings(), "sentence-vectors' own settings")
    soft: SoftTargetSettings = setting(SoftTargetSettings(), "masked-lm's and task's own settings")
    # the loop's defaults, for distillation
    optimizer: Literal["lamb", "adamw", "adamw_original"] = "adamw"  # type: ignore[assignment]
    learning_rate: float = 1e-4
    batch_size: int = 32
    warmup_fraction: float = 0.05
    run_dir: str = setting("", "training state (checkpoints, metrics); '' is --out's name + '-run', beside it")
    eval_every: int = 1000
    save_every: int = 500

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.data, str):
            self.data = [self.data]
        for name in ("teacher", "student", "data", "out"):
            if not getattr(self, name):
                raise ConfigError(f"distill needs --{name}")
        # a setting of another kind's group would be silently ignored: refused
        unused = ("soft", SoftTargetSettings(), "masked-lm and task") if self.kind == "sentence-vectors" else \
            ("vectors", VectorSettings(), "sentence-vectors")
        group, defaults, kinds = unused
        given = [f.name for f in dataclasses.fields(defaults)
                 if getattr(getattr(self, group), f.name) != getattr(defaults, f.name)]
        if given:
            raise ConfigError(f"--{given[0]} is a setting of --kind {kinds}; this run is --kind {self.kind}")
