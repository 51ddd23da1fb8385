"""Output directories and files: a command never replaces what an earlier run, or the user, left there.

A command that writes a directory claims it first (`claim_output`): the directory must be new, empty, or
hold only this same command's interrupted leftovers, recognised by the marker file it writes before
anything else and removes when it has finished. A failed command removes what it wrote, never anything
else.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from albert.errors import InputError

MARKER = ".albert-incomplete"  # {"command": ...}: the command that is writing, or was interrupted writing, here


def _listing(names: list[str]) -> str:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def interrupted_by(directory: Path) -> str | None:
    """The command whose interrupted output `directory` holds (its marker), or None."""
    marker = directory / MARKER
    if not marker.is_file():
        return None
    try:
        return str(json.loads(marker.read_text(encoding="utf-8"))["command"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_new_output(directory: str | Path, command: str, hint: str = "choose a new or empty --out") -> bool:
    """InputError unless `directory` is new, empty, or holds `command`'s own interrupted leftovers; True in the
    last case (the caller may clear them, or resume from them)."""
    directory = Path(directory)
    if not directory.exists():
        return False
    if not directory.is_dir():
        raise InputError(f"{directory} is a file; expected a new or empty directory")
    names = sorted(p.name for p in directory.iterdir())
    if not names:
        return False
    owner = interrupted_by(directory)
    if owner == command:
        return True
    what = f"an interrupted `albert {owner}`'s output" if owner else _listing(names)
    raise InputError(f"{directory} is not empty ({what}): {hint}")


@contextmanager
def claim_output(directory: str | Path, command: str) -> Iterator[Path]:
    """Write a command's output into `directory`: checked as check_new_output, marked while being written, the
    marker removed on success. On failure (an error, Ctrl-C) what was written is removed — the directory
    itself too where this call made it. A kill leaves the marker, so a rerun clears the leftovers."""
    directory = Path(directory)
    leftovers = check_new_output(directory, command)
    made = not directory.exists()
    if leftovers:
        _clear(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MARKER).write_text(json.dumps({"command": command}) + "\n", encoding="utf-8")
    try:
        yield directory
    except BaseException:
        if made:
            shutil.rmtree(directory, ignore_errors=True)
        else:
            _clear(directory)
        raise
    (directory / MARKER).unlink(missing_ok=True)


def _clear(directory: Path) -> None:
    """Empty a directory this command owns (new, empty before, or its own leftovers)."""
    for p in directory.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def check_new_file(path: str | Path, hint: str = "choose another --out or remove it") -> None:
    """InputError when `path` exists: an output file never replaces one."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a directory; expected a new file name")
    if path.exists():
        raise InputError(f"{path} already exists: {hint}")
