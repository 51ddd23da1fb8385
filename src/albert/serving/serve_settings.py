"""`albert serve`'s settings: each field with its help beside it, from which the command's flags are made
(albert.cli), checked before a model is loaded. Light to import: the CLI reads it to build its parser."""

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from albert.errors import InputError
from albert.tasks.registry import ALIASES, DEFAULT_MODEL, MAX_FILLERS, TASKS, get_task


def _flag(default: Any, help: str, **cli: Any) -> Any:
    """A field, its help, and how its flag differs from --name-with-dashes (cli: flag, choices, append; cli=False
    for those the runtime's common flags give)."""
    return dataclasses.field(default=default, metadata={"help": help, **cli})


@dataclass(frozen=True)
class ServeSettings:
    """What `albert serve` is told; checked before a model is loaded."""

    model: str = _flag("", "default: the task's embedded model (albert-small-en; albert-small-en-embed for "
                           "feature-extraction)")
    task: str = _flag("auto", "the pipeline (auto: the one the model directory was fine-tuned for; fill-mask for a "
                              "pretrained model); its endpoint is POST " + ", ".join(t.route for t in TASKS.values()),
                      choices=("auto", *TASKS, *ALIASES))
    host: str = _flag("127.0.0.1", "0.0.0.0 to accept connections from other machines (then set --api-key, or put it "
                                   "behind a proxy that authenticates)")
    port: int = _flag(8000, "0: any free port (printed)")
    max_batch: int = _flag(64, "inputs per model call at most (default 64)")
    max_batch_tokens: int = _flag(16384, "tokens per model call at most, as text-embeddings-inference budgets them "
                                         "(default 16384)")
    max_inputs: int = _flag(16384, "inputs per request at most (default 16384)")
    max_body: int = _flag(8 * 1024 * 1024, "bytes per request body (default 8 MiB)")
    max_bodies: int = _flag(64 * 1024 * 1024, "bytes of request bodies in flight at once, all connections together "
                                               "(a body over 64 KiB waits for none: beyond, 503 with Retry-After; "
                                               "default 64 MiB)")
    max_header_bytes: int = _flag(64 * 1024, "bytes of request line and headers at most (431 beyond; default 65536)")
    max_headers: int = _flag(100, "headers per request at most (431 beyond; default 100)")
    header_timeout: float = _flag(10.0, "seconds a request's headers may take to arrive (408 and close beyond)")
    body_timeout: float = _flag(60.0, "seconds a request's body may take to arrive after its headers (408 beyond)")
    max_fillers: int = _flag(MAX_FILLERS, "fill-mask answers per request at most, counted as [MASK]s × top_k "
                                          "(each is a rebuilt sentence; default 10000)")
    api_key: str | None = _flag(None, "require this key on every route but /health (Authorization: Bearer KEY); "
                                      "default: $ALBERT_API_KEY, else none")
    cors_origins: tuple[str, ...] = _flag((), "allow browsers on this origin (repeatable); default: no CORS",
                                          flag="--cors-origin", append=True)
    workers: int = _flag(1, "processes, each with its own model (memory: torch and the model, ~290 MB resident per "
                            "worker for albert-small-en)")
    grace: float = _flag(10.0, "seconds a shutdown waits for requests in flight")
    device: str = _flag("auto", "", cli=False)
    precision: str = _flag("auto", "", cli=False)
    compile: bool = _flag(False, "", cli=False)

    def __post_init__(self) -> None:
        if not self.model:
            default = DEFAULT_MODEL if self.task == "auto" else get_task(self.task).default_model
            object.__setattr__(self, "model", default)

    def check(self) -> None:
        if self.task != "auto":
            get_task(self.task)
        if not 0 <= self.port <= 65535:
            raise InputError(f"--port must be 0-65535, got {self.port}")
        for name in ("max_batch", "max_batch_tokens", "max_inputs", "max_body", "max_bodies", "max_fillers",
                     "max_header_bytes", "max_headers", "workers"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not (math.isfinite(self.grace) and self.grace >= 0):  # (nan compares false; inf would never end a stop)
            raise InputError(f"--grace must be a finite number of seconds >= 0, got {self.grace}")
        for name in ("header_timeout", "body_timeout"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise InputError(f"--{name.replace('_', '-')} must be a finite number of seconds > 0, got "
                                 f"{getattr(self, name)}")
        if self.api_key is not None and not self.api_key.strip():
            raise InputError("--api-key is empty")
