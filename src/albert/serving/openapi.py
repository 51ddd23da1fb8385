"""The OpenAPI document (/docs, /openapi.json): pydantic models of each task's request and answer, built from its
registry entry (the pipelines build the answers; these only describe them)."""

from __future__ import annotations

from typing import Any, Literal

from albert.serving.serve_settings import ServeSettings
from albert.tasks.registry import Parameter, Task


def schemas(task: Task) -> dict[str, Any]:
    """Pydantic models of the task's request and response bodies, as OpenAPI component schemas."""
    from pydantic import ConfigDict, Field, RootModel, TypeAdapter, create_model

    prefix = "".join(w.title() for w in task.name.split("-"))

    def field_type(kind: str) -> Any:
        return list[str] if kind == "options" else str

    input_model = create_model(f"{prefix}Input", __config__=ConfigDict(extra="allow"), **{  # type: ignore[call-overload]
        f.name: (field_type(f.kind), Field(... if f.required else None, description=f.help)) for f in task.fields})
    parameter_model = create_model(f"{prefix}Parameters", __config__=ConfigDict(extra="forbid"), **{  # type: ignore[call-overload]
        p.name: (parameter_type(p) | None, Field(p.default, description=p.help)) for p in task.parameters})
    one: Any = str | input_model if task.takes_text else input_model
    request = create_model(f"{prefix}Request", inputs=(one | list[one], Field(..., description="one input or a list")),
                           parameters=(parameter_model | None, None))
    one_answer = answer_model(task, prefix)
    response = create_model(f"{prefix}Response", __base__=RootModel[one_answer | list[one_answer]])  # type: ignore[valid-type]
    response.__doc__ = task.output
    models: list[Any] = [request, response]
    names = {"request": request.__name__, "response": response.__name__}
    if task.tei:
        tei = create_model("EmbedRequest", inputs=(str | list[str], ...), normalize=(bool, True),
                           truncate=(bool, False))
        models.append(tei)
        names["tei"] = tei.__name__
    schemas: dict[str, Any] = {}
    for model in models:
        schema = TypeAdapter(model).json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return {**names, "schemas": schemas}


_ANSWER_TYPES: dict[str, Any] = {"float": float, "int": int, "str": str, "list[float]": list[float]}


def answer_model(task: Task, prefix: str) -> Any:
    """One input's answer, as a model for the docs, from the task's registry entry (the pipelines build the answers;
    this only describes them)."""
    from pydantic import create_model

    if task.answer_form == "vector":
        return list[float]
    name = prefix + "Answer"
    one = create_model(name, **{k: (_ANSWER_TYPES[t.rstrip("?")] | None, None) if t.endswith("?")  # type: ignore[call-overload]
                                else (_ANSWER_TYPES[t], ...) for k, t in task.answer})
    if task.answer_form == "list":
        return list[one]  # type: ignore[valid-type]
    if task.answer_form == "one_or_list":
        return one | list[one]  # type: ignore[valid-type]
    if task.answer_form == "list_or_lists":
        return list[one] | list[list[one]]  # type: ignore[valid-type]
    return one


def parameter_type(p: Parameter) -> Any:
    if isinstance(p.type, tuple):
        return Literal[p.type]  # type: ignore[valid-type]
    return p.type


def parameter_info(p: Parameter) -> dict[str, Any]:
    kind = list(p.type) if isinstance(p.type, tuple) else p.type.__name__
    return {"name": p.name, "type": kind, "default": p.default, "help": p.help, "maximum": p.maximum,
            "minimum": p.minimum}


def description(task: Task, settings: ServeSettings) -> str:
    return (f"{task.help}. POST {task.route} takes {{inputs, parameters}}; the answer per input is {task.output}. "
            f"Limits: {settings.max_inputs:,} inputs and {settings.max_body:,} bytes per request; batches of "
            f"{settings.max_batch} inputs or {settings.max_batch_tokens:,} tokens.")


def version() -> str:
    from albert.version import __version__

    return __version__


def use_openapi_models(app: Any, models: dict[str, Any]) -> None:
    """The OpenAPI document, with the task's request and response models (built from the registry)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(models["schemas"])
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
