"""The errors albert raises on purpose: one family, each message one line that says what to change.

The CLI prints `albert: error: <message>` and exits 2 for any AlbertError; the server answers 4xx with
{"error": <message>}. Anything else that escapes is a bug in albert, not in the user's input.
The base classes beside AlbertError (ValueError, OSError, RuntimeError) keep `except ValueError` code
written against the standard library working.
"""

from __future__ import annotations


class AlbertError(Exception):
    """Base of every error albert raises for a reason the user can act on."""


class InputError(AlbertError, ValueError):
    """What a caller passed: command-line arguments, texts, pipeline parameters, a request body, an --out."""


class DataError(AlbertError, ValueError):
    """A data file's content (corpus, task file, metrics): it names the file and line (or JSON path)."""


class ConfigError(AlbertError, ValueError):
    """A model configuration or run settings: unknown keys, wrong types, values out of range."""


class CheckpointError(AlbertError, OSError):
    """A model, tokenizer or checkpoint that cannot be found, read or written."""


class TrainingError(AlbertError, RuntimeError):
    """Training cannot go on (non-finite loss, a run that cannot be resumed as asked)."""
