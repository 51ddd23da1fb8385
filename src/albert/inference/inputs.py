"""What the pipelines take, checked in one place for the CLI and the server, and grouped into batches.

A malformed input gets a one-line DataError that names its number (1-based), never a KeyError from deep
inside a pipeline. Imports neither torch nor the model code.
"""

from __future__ import annotations

from typing import Any

from albert.data.reader import DataError

_REQUIRED = object()


def field(item: Any, name: str, n: int, default: Any = _REQUIRED) -> Any:
    """Field `name` of input number `n`, `default` when it is optional and absent; a bare string is the field
    "text"."""
    if isinstance(item, str) and name == "text":
        return item
    if default is not _REQUIRED and not (isinstance(item, dict) and name in item):
        return default
    if not isinstance(item, dict):
        what = "a string or a JSON object with 'text'" if name == "text" else f"a JSON object with {name!r}"
        raise DataError(f"input {n}: expected {what}, got {type(item).__name__}")
    if name not in item:
        raise DataError(f"input {n}: expected a JSON object with {name!r}")
    value = item[name]
    if name == "options":
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise DataError(f"input {n}: 'options' must be a list of strings")
        if len(value) < 2:
            raise DataError(f"input {n}: a question needs at least two options")
    elif not isinstance(value, str):
        raise DataError(f"input {n}: {name!r} must be a string, got {type(value).__name__}")
    return value


def task_input(task: str, item: Any, n: int) -> Any:
    """Input number `n` of a pipeline task, in the shape that pipeline takes."""
    if task in ("fill-mask", "feature-extraction", "token-classification"):
        return field(item, "text", n)
    if task == "text-classification":
        pair = field(item, "text_pair", n, default=None)
        return {"text": field(item, "text", n)} | ({} if pair is None else {"text_pair": pair})
    if task == "question-answering":
        return {"question": field(item, "question", n), "context": field(item, "context", n)}
    if task == "multiple-choice":
        return {"question": field(item, "question", n), "options": field(item, "options", n),
                "article": field(item, "article", n, default="")}
    if task == "sentence-order":
        return {"first": field(item, "first", n), "second": field(item, "second", n)}
    raise DataError(f"unknown task {task!r}")


# the keyword arguments each pipeline takes from a caller: name → allowed values, or the type of a number ≥ 1
PARAMETERS: dict[str, dict[str, Any]] = {
    "fill-mask": {"top_k": int},
    "feature-extraction": {"pooling": ("cls", "mean"), "normalize": bool},
    "text-classification": {"top_k": int},
    "token-classification": {"aggregation_strategy": ("simple", "none")},
    "question-answering": {"doc_stride": int, "max_answer_length": int, "handle_impossible_answer": bool},
    "multiple-choice": {},
    "sentence-order": {},
}


def task_parameters(task: str, given: Any) -> dict[str, Any]:
    """`given` checked against the task's parameters: unknown names, wrong types and values are errors."""
    if not isinstance(given, dict):
        raise DataError(f"'parameters' must be a JSON object, got {type(given).__name__}")
    allowed = PARAMETERS[task]
    for name, value in given.items():
        if name not in allowed:
            raise DataError(f"unknown parameter {name!r} for {task}; known: {', '.join(allowed) or 'none'}")
        kind = allowed[name]
        if kind is int and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            raise DataError(f"parameter {name!r} must be an integer >= 1, got {value!r}")
        if kind is bool and not isinstance(value, bool):
            raise DataError(f"parameter {name!r} must be true or false, got {value!r}")
        if isinstance(kind, tuple) and value not in kind:
            raise DataError(f"parameter {name!r} must be one of {', '.join(kind)}, got {value!r}")
    return dict(given)


def pad_batch(ids: list[list[int]], types: list[list[int]], pad_id: int) -> dict[str, list[list[int]]]:
    """Rows padded on the right to the longest: input_ids, token_type_ids and the attention_mask over them."""
    T = max(len(x) for x in ids)
    return {"input_ids": [x + [pad_id] * (T - len(x)) for x in ids],
            "token_type_ids": [t + [0] * (T - len(t)) for t in types],
            "attention_mask": [[1] * len(x) + [0] * (T - len(x)) for x in ids]}


def buckets(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (sorted), so padding wastes little compute."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
