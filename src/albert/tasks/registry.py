"""The tasks albert knows, each in one entry: its names, heads, inputs, parameters, route and outputs.

The CLI's commands and choices, the pipelines, the server's routes, `--task auto` and the ONNX export's
outputs are all derived from these tables. Adding a task is one `Task` entry here plus its featurize and
post-process code (a featurizer in albert.tasks, a pipeline class in albert.inference.pipelines).

Two name sets meet here: pipeline tasks (what a model answers: transformers' names, "text-classification")
and fine-tuning kinds (how a head is trained: "classification", "regression", "multi-label", ...). Each kind
names the pipeline task its model answers, so a fine-tuned directory is served and exported without
being told what it is.

This module imports neither torch nor the model code: the CLI builds its parser from it in milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from albert.errors import ConfigError, InputError
from albert.modeling.config import MAX_LAYER_PASSES


class HasFlag:
    """A field or parameter's command-line flag: its own `flag`, else --name-with-dashes."""

    name: str
    flag: str

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class Field(HasFlag):
    """One field of a task's input. `text`: a string; `options`: a list of at least two strings."""

    name: str
    kind: Literal["text", "options"] = "text"
    required: bool = True
    help: str = ""
    flag: str = ""  # the CLI flag, when not --name-with-dashes


@dataclass(frozen=True)
class Parameter(HasFlag):
    """A keyword argument of a task's pipeline, as callers pass it (CLI flag, request `parameters`)."""

    name: str
    type: type | tuple[str, ...]  # int, float, bool, or the allowed strings
    default: Any
    help: str
    flag: str = ""  # the CLI flag, when not --name-with-dashes
    cli: bool = True  # offered on the command line
    maximum: int | None = None  # for int and float parameters: the largest value a caller may ask for
    minimum: int = 1  # for int and float parameters: the smallest


@dataclass(frozen=True)
class Head:
    """A model class (transformers' name) and the outputs its ONNX export has, in order."""

    architecture: str
    outputs: tuple[str, ...]


# The embedded models (src/albert/models/): the pretrained one answers fill-mask and is where fine-tuning starts;
# the distilled sentence-vector one is feature extraction's default (`albert embed`, `serve --task
# feature-extraction`, `export sentence-transformers`)
DEFAULT_MODEL = "albert-small-en"
EMBED_MODEL = "albert-small-en-embed"


@dataclass(frozen=True)
class Task:
    name: str  # the pipeline task (transformers' name)
    command: str  # the CLI command; the server's route is /command
    help: str
    heads: tuple[str, ...]  # the classes it runs: a directory saved from one of them loads as it, others as the first
    fields: tuple[Field, ...]
    parameters: tuple[Parameter, ...] = ()
    aliases: tuple[str, ...] = ()  # transformers' other names for it
    output: str = ""  # the shape of one input's answer
    windows: bool = False  # reads texts longer than the model in overlapping windows (else truncates)
    # its answers multiply: each [MASK] × top_k is a rebuilt sentence (the server limits them, --max-fillers)
    fills_masks: bool = False
    also_answers: tuple[str, ...] = ()  # other saved architectures whose directories it answers (`--task auto`)
    # one input, by field: the server's page starts from it, and `serve --compile` warms up on it
    example: dict[str, Any] = field(default_factory=dict, compare=False)
    # how the Hugging Face inference API differs for this task: it nests each input's answer in a list and ranks
    # every label unless told (text classification), or sends the options beside "inputs" (feature extraction)
    api_nests_answers: bool = False
    api_options_top_level: bool = False
    # its route also takes text-embeddings-inference's body ({inputs, normalize, truncate}) and answers in TEI's shape
    tei: bool = False
    default_model: str = DEFAULT_MODEL  # what runs it when no model is named
    # One input's answer, described for the server's OpenAPI docs (the pipelines build the answers): its fields as
    # (name, type) with types float, int, str and list[float]; and its form: one such object, a list of them, either
    # (one, or a ranked list: top_k), a list or a list of lists (one per [MASK]), or a vector
    answer: tuple[tuple[str, str], ...] = ()
    answer_form: Literal["one", "list", "one_or_list", "list_or_lists", "vector"] = "one"

    @property
    def route(self) -> str:
        return "/" + self.command

    @property
    def takes_text(self) -> bool:
        """Its inputs may be bare strings (its first field is `text`)."""
        return self.fields[0].name == "text"

    def parameter(self, name: str) -> Parameter:
        return next(p for p in self.parameters if p.name == name)


@dataclass(frozen=True)
class FinetuneKind:
    """A way to fine-tune: the head it trains, the pipeline task its model answers, its loss's problem type."""

    name: str
    task: str
    head: str
    problem_type: str | None = None
    help: str = ""


TOP_K_LIMIT = 1000
MAX_FILLERS = 10_000  # fill-mask answers per request (server) or per text (CLI), as [MASK]s × top_k

HEADS: dict[str, Head] = {h.architecture: h for h in (
    Head("AlbertModel", ("last_hidden_state", "pooler_output")),
    Head("AlbertForPreTraining", ("prediction_logits", "sop_logits")),
    Head("AlbertForMaskedLM", ("logits",)),
    Head("AlbertForSequenceClassification", ("logits",)),
    Head("AlbertForTokenClassification", ("logits",)),
    Head("AlbertForQuestionAnswering", ("start_logits", "end_logits")),
    Head("AlbertForMultipleChoice", ("logits",)),
    # the beam is the graph's own; without a p_mask input only padding is excluded from spans
    Head("AlbertForQuestionAnsweringWithAnswerability", ("start_top_log_probs", "start_top_index",
                                                         "end_top_log_probs", "end_top_index", "cls_logits")),
)}

_TEXT = Field("text", help="the text")
# early exit (albert.modeling.early_exit), for heads fine-tuned with --early_exit true; both 0: every pass
EXIT_PARAMETERS = (
    Parameter("patience", int, 0, "early exit: stop once the prediction has held for this many passes of the shared "
              "layer (0: off; a model fine-tuned with --early_exit true)", minimum=0, maximum=MAX_LAYER_PASSES),
    Parameter("exit_threshold", float, 0.0, "early exit: stop once the label distribution's entropy (nats) is below "
              "this (0: off)", minimum=0, maximum=100))

TASKS: dict[str, Task] = {t.name: t for t in (
    Task("fill-mask", "fill-mask", "predict the [MASK] tokens of texts",
         ("AlbertForMaskedLM",), (Field("text", help="a text with [MASK]"),),
         (Parameter("top_k", int, 5, "fillers per [MASK]", maximum=TOP_K_LIMIT),),
         also_answers=("AlbertForPreTraining",), fills_masks=True,
         output="per [MASK], its top_k fillers [{score, token, token_str, sequence}] (one mask: a flat list)",
         example={"text": "The whale swam through the [MASK] sea."},
         answer=(("score", "float"), ("token", "int"), ("token_str", "str"), ("sequence", "str")),
         answer_form="list_or_lists"),
    Task("feature-extraction", "embed", "sentence vectors, one JSON list per input", ("AlbertModel",), (_TEXT,),
         (Parameter("pooling", ("auto", "cls", "mean", "max", "mean_sqrt_len"), "auto",
                    "auto: a sentence-transformers directory's own pooling, else mean over the text's tokens (as "
                    "sentence-transformers pools); cls: the [CLS] hidden state"),
          Parameter("normalize", bool, None, "L2-normalise the vectors (default: as the directory says, else no)")),
         output="the text's vector [float, ...]", example={"text": "Call me Ishmael."}, api_options_top_level=True,
         tei=True, default_model=EMBED_MODEL, answer_form="vector"),
    Task("text-classification", "classify", "labels of texts (a fine-tuned classifier)",
         ("AlbertForSequenceClassification",),
         (_TEXT, Field("text_pair", required=False, help="a second text, for pair tasks", flag="--pair")),
         (Parameter("top_k", int, 1, "labels per text (ranked)", maximum=TOP_K_LIMIT), *EXIT_PARAMETERS),
         aliases=("sentiment-analysis",),
         output="{label, score} (top_k 1), else [{label, score}, ...] ranked; with early exit each also says "
                "the passes its text ran",
         example={"text": "The food was wonderful and the staff were kind."}, api_nests_answers=True,
         answer=(("label", "str"), ("score", "float"), ("passes", "int?")), answer_form="one_or_list"),
    Task("token-classification", "tag", "entities in texts (a fine-tuned token classifier)",
         ("AlbertForTokenClassification",), (_TEXT,),
         (Parameter("aggregation_strategy", ("first", "simple", "none"), "first",
                    "first: each word takes its first piece's tag (as fine-tuning taught it) and a B-/I- run of words "
                    "is one entity; simple: the same over pieces; none: one entry per piece", flag="--aggregation"),),
         aliases=("ner",), windows=True,
         output="[{entity_group, score, word, start, end}, ...] (none: {entity, score, index, word, start, end})",
         example={"text": "Ishmael sailed from Nantucket on the Pequod."},
         answer=(("entity_group", "str"), ("score", "float"), ("word", "str"), ("start", "int"), ("end", "int")),
         answer_form="list"),
    Task("question-answering", "answer", "extractive answers (a fine-tuned QA model)",
         ("AlbertForQuestionAnswering", "AlbertForQuestionAnsweringWithAnswerability"),
         (Field("question", help="the question"), Field("context", help="the text that holds the answer")),
         (Parameter("doc_stride", int, 128, "tokens between the starts of a long context's windows"),
          Parameter("max_answer_length", int, 30, "the longest answer, in tokens"),
          Parameter("handle_impossible_answer", bool, False, 'answer "" where the model prefers no answer '
                    "(SQuAD 2.0 models)", flag="--allow-no-answer")),
         windows=True, output="{answer, score, start, end, no_answer_score}",
         example={"question": "Where did the whale swim?", "context": "The whale swam through the cold northern sea."},
         answer=(("answer", "str"), ("score", "float"), ("start", "int"), ("end", "int"),
                 ("no_answer_score", "float"))),
    Task("multiple-choice", "choose", "pick an option (a fine-tuned multiple-choice model)",
         ("AlbertForMultipleChoice",),
         (Field("question", help="the question (a '_' in it is filled by each option)"),
          Field("options", "options", help="the options (two or more)"),
          Field("article", required=False, help="the passage the question is about")),
         EXIT_PARAMETERS,
         output="{label: the best option's index, scores: [probability per option]}; with early exit also passes",
         example={"question": "The whale swam in the _.", "options": ["sea", "sky", "desert"]},
         answer=(("label", "int"), ("scores", "list[float]"), ("passes", "int?"))),
    Task("sentence-order", "sentence-order", "is the second text the continuation of the first? (pretraining's "
         "SOP head, or a model fine-tuned with --task sentence-order)",
         ("AlbertForPreTraining", "AlbertForSequenceClassification"),
         (Field("first", help="the first text"), Field("second", help="the text that may follow it")),
         EXIT_PARAMETERS,
         output="{label: in_order | swapped, score}; with early exit also passes",
         example={"first": "The ship left the harbour.", "second": "By noon it was far out at sea."},
         answer=(("label", "str"), ("score", "float"), ("passes", "int?"))),
)}

KINDS: dict[str, FinetuneKind] = {k.name: k for k in (
    FinetuneKind("classification", "text-classification", "AlbertForSequenceClassification",
                 "single_label_classification", "one label per text or text pair"),
    FinetuneKind("regression", "text-classification", "AlbertForSequenceClassification", "regression",
                 "a number per text or text pair (STS-B)"),
    FinetuneKind("multi-label", "text-classification", "AlbertForSequenceClassification", "multi_label_classification",
                 "any number of labels per text"),
    FinetuneKind("token-classification", "token-classification", "AlbertForTokenClassification", None,
                 "a tag per word (BIO)"),
    FinetuneKind("multiple-choice", "multiple-choice", "AlbertForMultipleChoice", None,
                 "the right option of a question"),
    FinetuneKind("qa", "question-answering", "AlbertForQuestionAnswering", None,
                 "SQuAD 1.1: every question has an answer"),
    FinetuneKind("qa-v2", "question-answering", "AlbertForQuestionAnswering", None,
                 "SQuAD 2.0: some questions have none"),
    FinetuneKind("sentence-order", "sentence-order", "AlbertForSequenceClassification", "single_label_classification",
                 "is the second text the continuation of the first: a text file's documents cut into pairs of "
                 "consecutive segments, in order or swapped, as pretraining's SOP cuts them (a blank line ends a "
                 "document), or rows of first, second and label (in_order or swapped)"),
)}

ALIASES: dict[str, str] = {alias: t.name for t in TASKS.values() for alias in t.aliases}


def get_task(name: str) -> Task:
    """A pipeline task by its name or one of transformers' aliases for it."""
    task = TASKS.get(ALIASES.get(name, name))
    if task is None:
        raise InputError(f"unknown task {name!r}; known: {', '.join(sorted([*TASKS, *ALIASES]))}")
    return task


def task_of_architecture(architecture: str | None, kind: str | None = None) -> Task | None:
    """The task a model saved as `architecture` answers (`--task auto`): the one its fine-tuning `kind` answers
    (config.albert_task), else the first that lists the architecture."""
    if kind in KINDS:
        return TASKS[KINDS[kind].task]
    return next((t for t in TASKS.values() if architecture in (*t.heads, *t.also_answers)), None)


def get_kind(name: str) -> FinetuneKind:
    if name not in KINDS:
        raise ConfigError(f"unknown fine-tuning task {name!r}; known: {', '.join(KINDS)}")
    return KINDS[name]


# ----- checking what callers pass -----
# the longest text a windowed task (tagging, QA) reads: every window of it is tokenized and run, so its memory
# grows with the text (~100 bytes per token), unlike the truncating tasks, which read a text only as far as the
# model's length
MAX_WINDOWED_CHARS = 4_000_000


def check_input(task: Task, item: Any, n: int) -> Any:
    """Input number `n` (1-based) of `task`, in the shape its pipeline takes: a string for tasks whose only
    field is `text`, else an object of its fields. A malformed input is an InputError naming its number."""
    if isinstance(item, str) and task.takes_text:
        item = {"text": item}
    if not isinstance(item, dict):
        what = "a string or a JSON object with 'text'" if task.takes_text else \
            f"a JSON object with {', '.join(repr(f.name) for f in task.fields if f.required)}"
        raise InputError(f"input {n}: expected {what}, got {type(item).__name__}")
    # other fields are left alone: a task file's rows carry ids and labels beside the texts
    out: dict[str, Any] = {}
    for f in task.fields:
        if f.name not in item or (item[f.name] is None and not f.required):
            if f.required:
                raise InputError(f"input {n}: expected a JSON object with {f.name!r}")
            continue
        out[f.name] = _check_field(f, item[f.name], n)
        if task.windows and isinstance(out[f.name], str) and len(out[f.name]) > MAX_WINDOWED_CHARS:
            raise InputError(f"input {n}: {f.name!r} has {len(out[f.name]):,} characters; {task.name} reads a text "
                             f"whole, in windows, up to {MAX_WINDOWED_CHARS:,} (split it)")
    return out["text"] if len(task.fields) == 1 and task.takes_text else out


def _check_field(f: Field, value: Any, n: int) -> Any:
    if f.kind == "options":
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise InputError(f"input {n}: {f.name!r} must be a list of strings")
        if len(value) < 2:
            raise InputError(f"input {n}: a question needs at least two options")
        for x in value:
            _check_text(x, f.name, n)
        return value
    if not isinstance(value, str):
        raise InputError(f"input {n}: {f.name!r} must be a string, got {type(value).__name__}")
    return _check_text(value, f.name, n)


def _check_text(value: str, name: str, n: int) -> str:
    """Text that encodes as UTF-8: a lone surrogate (from JSON '\\ud800' or undecodable arguments) does not."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"input {n}: {name!r} is not valid Unicode text (a lone surrogate; were the bytes "
                         "UTF-8?)") from None
    return value


def check_parameters(task: Task, given: Any) -> dict[str, Any]:
    """`given` checked against the task's parameters: unknown names, wrong types and values are errors."""
    if not isinstance(given, dict):
        raise InputError(f"'parameters' must be a JSON object, got {type(given).__name__}")
    allowed = {p.name: p for p in task.parameters}
    for name, value in given.items():
        if name not in allowed:
            raise InputError(f"unknown parameter {name!r} for {task.name}; known: {', '.join(allowed) or 'none'}")
        check_parameter(allowed[name], value)
    return dict(given)


def check_parameter(p: Parameter, value: Any) -> Any:
    if p.type in (int, float):
        number = (int, float) if p.type is float else int
        if not (isinstance(value, number) and not isinstance(value, bool) and math.isfinite(value)
                and value >= p.minimum):
            kind = "an integer" if p.type is int else "a number"
            raise InputError(f"parameter {p.name!r} must be {kind} >= {p.minimum}, got {_short(value)}")
        if p.maximum is not None and value > p.maximum:
            raise InputError(f"parameter {p.name!r} must be at most {p.maximum}, got {_short(value)}")
    elif p.type is bool:
        if not isinstance(value, bool) and not (value is None and p.default is None):
            raise InputError(f"parameter {p.name!r} must be true or false, got {_short(value)}")
    elif isinstance(p.type, tuple) and value not in p.type:
        raise InputError(f"parameter {p.name!r} must be one of {', '.join(p.type)}, got {_short(value)}")
    return value


def _short(value: Any) -> str:
    text = repr(value) if not (isinstance(value, float) and not math.isfinite(value)) else str(value)
    return text if len(text) <= 40 else text[:30] + f"... ({len(text)} characters)"


def defaults(task: Task) -> dict[str, Any]:
    return {p.name: p.default for p in task.parameters}

