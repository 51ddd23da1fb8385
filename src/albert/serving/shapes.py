"""The request and response shapes one route may speak (litgpt's LitAPI: one small class per API, its own decode and
encode): albert's own (the pipelines'), the Hugging Face inference API's, and text-embeddings-inference's /embed. How
a task's API answers differ is data in its registry entry (`api_nests_answers`, `api_options_top_level`, `tei`), not
a branch on its name; a new API shape is one more class here."""

from __future__ import annotations

from typing import Any

from albert.errors import InputError
from albert.tasks.registry import Task, check_input, check_parameters


def input_tokens(tokenizer: Any, task: Task, item: Any) -> int:
    """The tokens of an input with its special tokens (each option's row, for multiple choice), untruncated."""
    texts = [item] if isinstance(item, str) else [v for v in item.values() if isinstance(v, str)]
    options = item.get("options", []) if isinstance(item, dict) else []
    pieces = sum(len(e.ids) for e in tokenizer.encode_pieces(texts)) + 3
    if options:
        pieces = pieces * len(options) + sum(len(e.ids) for e in tokenizer.encode_pieces(options))
    return pieces


class TooLarge(InputError):
    """An input longer than the model reads, where the caller asked not to truncate (413)."""


def body_text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"the body is not UTF-8 (byte {e.start})") from None


class Shape:
    """albert's own shape: {"inputs": one input or a list, "parameters": the pipeline's keyword arguments}; the
    answer is one input's answer, or a list of them."""

    def for_body(self, payload: Any) -> Shape:
        """The shape that reads this body (a route may take two)."""
        return self

    def options(self, task: Task, payload: dict[str, Any]) -> Any:
        unknown = set(payload) - {"inputs", "parameters", "options"}
        if unknown:
            raise InputError(f"unknown key(s) {', '.join(sorted(unknown))}: the body takes 'inputs' and 'parameters'")
        return payload.get("parameters") or {}

    def decode(self, task: Task, payload: Any, max_inputs: int) -> tuple[list[Any], bool, dict[str, Any]]:
        """(inputs, whether one input was sent rather than a list, parameters) of a request body."""
        if not isinstance(payload, dict) or "inputs" not in payload:
            raise InputError('the body must be a JSON object with "inputs" (and optionally "parameters")')
        parameters = self.options(task, payload)
        raw = payload["inputs"]
        single = not isinstance(raw, list)
        items = [raw] if single else raw
        if not items:
            raise InputError("'inputs' is an empty list")
        if len(items) > max_inputs:
            raise InputError(f"{len(items):,} inputs in one request; the limit is {max_inputs:,} (--max-inputs)")
        checked = [check_input(task, x, n) for n, x in enumerate(items, 1)]
        return checked, single, check_parameters(task, parameters)

    def check_lengths(self, payload: dict[str, Any], lengths: list[int], limit: int) -> None:
        """Inputs longer than the model reads are truncated (or windowed), unless a shape says otherwise."""

    def encode(self, task: Task, results: list[Any], single: bool) -> Any:
        return results[0] if single else results


class PipelineShape(Shape):
    """albert's own shape, as the pipelines take and give it."""


class InferenceApiShape(Shape):
    """The Hugging Face inference API's shapes (huggingface_hub.InferenceClient): its parameter names, options sent
    beside "inputs" where the task's API does so, and each input's answer nested in a list where it nests them."""

    def options(self, task: Task, payload: dict[str, Any]) -> Any:
        if task.api_options_top_level:
            parameters = {k: v for k, v in payload.items() if k not in ("inputs", "parameters")}
            parameters |= payload.get("parameters") or {}
            parameters.pop("truncate", None)  # the pipeline always truncates at the model's limit
        else:
            parameters = super().options(task, payload)
        if not isinstance(parameters, dict):
            return parameters  # (check_parameters says what is wrong with it)
        renamed = {"max_answer_len": "max_answer_length"}
        out = {renamed.get(k, k): v for k, v in parameters.items()}
        if task.api_nests_answers and "top_k" not in out:
            out["top_k"] = None  # the API lists every label unless told otherwise
        return out

    def encode(self, task: Task, results: list[Any], single: bool) -> Any:
        if task.api_nests_answers:
            return [r if isinstance(r, list) else [r] for r in results]
        return super().encode(task, results, single)


class TeiShape(Shape):
    """text-embeddings-inference's /embed: {inputs, normalize (default true), truncate (default false: an input
    longer than the model is refused, 413)}; always a list of vectors."""

    def options(self, task: Task, payload: dict[str, Any]) -> Any:
        unknown = set(payload) - {"inputs", "normalize", "truncate", "truncation_direction", "prompt_name"}
        if unknown:
            raise InputError(f"unknown key(s) {', '.join(sorted(unknown))}: /embed takes inputs, normalize, truncate")
        normalize = payload.get("normalize", True)
        if not isinstance(normalize, bool) or not isinstance(payload.get("truncate", False), bool):
            raise InputError("normalize and truncate must be true or false")
        if payload.get("truncation_direction", "right") not in ("right", "Right"):
            raise InputError("only truncation_direction 'right' is supported")
        if payload.get("prompt_name") is not None:
            raise InputError("prompt_name is not supported (albert models have no prompts)")
        return {"normalize": normalize}

    def check_lengths(self, payload: dict[str, Any], lengths: list[int], limit: int) -> None:
        if payload.get("truncate", False):
            return
        too_long = next((n for n, c in enumerate(lengths, 1) if c > limit), None)
        if too_long is not None:
            raise TooLarge(f"input {too_long} has {lengths[too_long - 1]} tokens; the model reads at most "
                            f"{limit} (send \"truncate\": true)")

    def encode(self, task: Task, results: list[Any], single: bool) -> Any:
        return results  # always a list of vectors


class EmbedRouteShape(Shape):
    """A TEI task's own route (/embed): TEI's body, or the pipeline's when it sends "parameters"."""

    def for_body(self, payload: Any) -> Shape:
        return PipelineShape() if isinstance(payload, dict) and "parameters" in payload else TeiShape()
