"""Output directories: a command never overwrites what an earlier run, or the user, left there."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def check_new_output(directory: str | Path, holds: Iterable[str], hint: str = "choose another --out or remove it"
                     ) -> None:
    """FileExistsError (one line, for the CLI) when `directory` already holds any of the names in `holds`."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise FileExistsError(f"{directory} is a file; expected a directory")
    for name in holds:
        if (directory / name).exists():
            raise FileExistsError(f"{directory} already holds {name}: {hint}")
