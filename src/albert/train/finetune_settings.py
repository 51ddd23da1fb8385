"""`albert finetune`'s settings: the fields (its flags and YAML keys), the paper's recipes, and how they combine.

Kept apart from the fine-tuning code so that the command line builds its flags from them without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from albert.errors import ConfigError
from albert.modeling.config import MIN_SEQ_LENGTH
from albert.tasks.registry import DEFAULT_MODEL, EMBED_MODEL, KINDS, get_kind
from albert.train.settings import TrainSettings, build_settings, read_settings_file, setting

# The paper's fine-tuning hyperparameters (Lan et al. 2019, the appendix's table for downstream tasks): lr, batch,
# steps, warmup, max length. (ALBERT v2 models need lr 1e-5 and no encoder dropout on RACE, or they diverge.)
RECIPES: dict[str, dict[str, Any]] = {
    "sst-2": dict(learning_rate=1e-5, batch_size=32, max_steps=20935, warmup_steps=1256, max_seq_length=512),
    "mnli": dict(learning_rate=3e-5, batch_size=128, max_steps=10000, warmup_steps=1000, max_seq_length=512),
    "cola": dict(learning_rate=1e-5, batch_size=16, max_steps=5336, warmup_steps=320, max_seq_length=512),
    "qnli": dict(learning_rate=1e-5, batch_size=32, max_steps=33112, warmup_steps=1986, max_seq_length=512),
    "qqp": dict(learning_rate=5e-5, batch_size=128, max_steps=14000, warmup_steps=1000, max_seq_length=512),
    "rte": dict(learning_rate=3e-5, batch_size=32, max_steps=800, warmup_steps=200, max_seq_length=512),
    "sts-b": dict(learning_rate=2e-5, batch_size=16, max_steps=3598, warmup_steps=214, max_seq_length=512),
    "mrpc": dict(learning_rate=2e-5, batch_size=32, max_steps=800, warmup_steps=200, max_seq_length=512),
    "squad-v1.1": dict(learning_rate=5e-5, batch_size=48, max_steps=3649, warmup_steps=365, max_seq_length=384),
    "squad-v2.0": dict(learning_rate=3e-5, batch_size=48, max_steps=8144, warmup_steps=814, max_seq_length=512),
    "race": dict(learning_rate=2e-5, batch_size=32, max_steps=12000, warmup_steps=1000, max_seq_length=512),
}


# passes over the training data at most: more is a typo (or a run that would never end), not a schedule
MAX_EPOCHS = 10_000

# the fine-tuning tasks whose head can exit early (albert.modeling.early_exit): one answer per input, from [CLS]
EARLY_EXIT_TASKS = ("classification", "regression", "multiple-choice", "sentence-order")


@dataclass
class FinetuneSettings(TrainSettings):
    task: str = setting("classification", "the fine-tuning task: " + "; ".join(f"{k.name}: {k.help}"
                                                                              for k in KINDS.values()))
    doc_stride: int = setting(128, "qa: tokens between the starts of a long context's windows")
    max_answer_length: int = setting(30, "qa: the longest answer, in tokens")
    answerability_head: bool = setting(False,
                                       "qa: the original ALBERT's SQuAD 2.0 head (start → end beam and answerability)")
    train: str = setting("", "the training file (.jsonl, .parquet, GLUE .tsv, SQuAD/RACE .json, CoNLL; "
                         "sentence-order: also .txt documents)")
    dev: str = setting("", "the dev file, scored at each evaluation")
    model: str = setting("", "the model directory or packaged name to fine-tune from; '' is the shipped model that "
                             "fine-tunes best: albert-small-en-embed, or albert-small-en for sentence-order (its SOP "
                             "head starts the classifier)")
    out: str = setting("", "the fine-tuned model's directory (new)")
    max_seq_length: int = setting(128, "tokens per sequence at most (longer inputs are truncated or windowed)",
                                  at_least=MIN_SEQ_LENGTH)
    epochs: float = setting(3.0, "passes over the training data, used when max_steps is 0")
    label_field: str = setting("label", "the label column of the training rows")
    tsv_layout: str = setting("", "the GLUE layout of a .tsv file when its path does not tell (cola, sst-2, mrpc, ...)")
    eval_batch_size: int = setting(64, "sequences per forward pass when evaluating")
    early_exit: bool = setting(False, "a classifier after every pass of the shared layer, trained with PABEE's "
                               "pass-weighted loss, so that inference may stop early (--patience, --exit_threshold); "
                               "classification, regression, multiple-choice, sentence-order")
    exit_classifiers: Literal["shared", "per_pass"] = setting(
        "shared", "early_exit: the one classifier after every pass, or one per pass (docs/early-exit.md)")
    # fine-tuning defaults differ from pretraining's
    optimizer: Literal["lamb", "adamw", "adamw_original"] = "adamw"  # type: ignore[assignment]
    learning_rate: float = setting(2e-5, "peak learning rate, reached after warm-up")
    batch_size: int = setting(32, "sequences per optimizer step, all processes and accumulation together")
    max_steps: int = setting(0, "optimizer steps the schedule spans")
    warmup_fraction: float = setting(0.1, "warm-up as a fraction of max_steps, used when warmup_steps is 0")
    run_dir: str = setting("", "directory for settings, metrics.jsonl, checkpoints and the final model")
    eval_every: int = setting(0, "steps between evaluations")
    save_every: int = setting(0, "steps between checkpoints")
    keep_checkpoints: int = setting(1, "checkpoints kept (older ones are removed)")

    def __post_init__(self) -> None:
        get_kind(self.task)
        if not self.model:  # (docs/benchmarks.md: the embed model fine-tunes above albert-small-en on all six tasks)
            self.model = DEFAULT_MODEL if self.task == "sentence-order" else EMBED_MODEL
        if not self.train or not self.out:
            raise ConfigError("finetune needs --train FILE and --out DIR")
        if self.max_steps < 0 or not 0 < self.epochs <= MAX_EPOCHS:
            raise ConfigError(f"max_steps must be >= 0 and epochs in (0, {MAX_EPOCHS:,}]; got {self.epochs:.3g} epochs")
        if self.answerability_head and self.task not in ("qa", "qa-v2"):
            raise ConfigError("answerability_head is a question-answering head (task qa or qa-v2)")
        if self.early_exit and self.task not in EARLY_EXIT_TASKS:
            raise ConfigError(f"early_exit is for the tasks that classify a whole input: {', '.join(EARLY_EXIT_TASKS)}")
        saved, self.max_steps = self.max_steps, max(self.max_steps, 1)
        super().__post_init__()
        self.max_steps = saved


def finetune_settings(values: dict[str, Any], config: str | Path | None = None) -> FinetuneSettings:
    """Settings from, lowest priority first: the defaults, a named recipe (`recipe`), a YAML file, `values` (what
    was given explicitly; None means not given)."""
    from_file = read_settings_file(config) if config else {}
    given = {k: v for k, v in values.items() if v is not None}
    name = given.pop("recipe", None) or from_file.pop("recipe", None)
    if name and name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}")
    return build_settings(FinetuneSettings, {**(RECIPES[name] if name else {}), **from_file, **given})
