"""Output directories and files: a command never replaces, nor deletes, what an earlier run or the user left there.

A command that writes a directory claims it first (`claim_output`): the directory must be new, empty, or hold
only this same command's interrupted leftovers. Everything is written into a staging directory inside it,
`.albert-incomplete/` (made by the claim, with the command's name in it), and moved up only when the command has
finished. So whatever a killed run left is inside the staging directory, and only that is ever removed: a file
beside it is the user's (or of unknown origin), and a directory holding one is refused, never cleared.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from albert.errors import InputError

MARKER = ".albert-incomplete"  # the staging directory of the command writing here (or interrupted writing here)
_COMMAND = ".command"  # inside it: {"command": ...}


def _listing(names: list[str]) -> str:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def interrupted_by(directory: Path) -> str | None:
    """The command whose interrupted output `directory` holds (its staging directory, or the marker file that
    earlier releases wrote), or None."""
    marker = directory / MARKER
    record = marker / _COMMAND if marker.is_dir() else marker
    if not record.is_file():
        return None
    try:
        return str(json.loads(record.read_text(encoding="utf-8"))["command"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_new_output(directory: str | Path, command: str, hint: str = "choose a new or empty --out") -> bool:
    """InputError unless `directory` is new, empty, or holds nothing but `command`'s own interrupted staging
    directory; True in the last case (the caller may clear it, or resume from it)."""
    directory = Path(directory)
    if not directory.exists():
        return False
    if not directory.is_dir():
        raise InputError(f"{directory} is a file; expected a new or empty directory")
    names = sorted(p.name for p in directory.iterdir())
    if not names:
        return False
    owner = interrupted_by(directory)
    others = [n for n in names if n != MARKER]
    if owner is not None and others:
        raise InputError(f"{directory} holds an interrupted `albert {owner}`'s output and files albert did not "
                         f"write there ({_listing(others)}): move them away, or {hint}")
    if owner == command:
        return True
    what = f"an interrupted `albert {owner}`'s output" if owner else _listing(names)
    raise InputError(f"{directory} is not empty ({what}): {hint}")


@contextmanager
def claim_output(directory: str | Path, command: str) -> Iterator[Path]:
    """Write a command's output: checked as check_new_output, then the staging directory is yielded, to write
    into; on success its contents move up into `directory` and it is removed. On failure (an error, Ctrl-C) the
    staging directory is removed — and `directory` too where this call made it and nothing else was put there. A kill
    leaves the staging directory, which a rerun of the same command clears."""
    directory = Path(directory)
    leftovers = check_new_output(directory, command)
    made = not directory.exists()
    staging = directory / MARKER
    if leftovers:
        _remove(staging)
    staging.mkdir(parents=True)
    (staging / _COMMAND).write_text(json.dumps({"command": command}) + "\n", encoding="utf-8")
    try:
        yield staging
        _publish(staging, directory)
    except BaseException:
        _remove(staging)
        if made:
            try:
                directory.rmdir()  # (only if still empty: nothing but what albert wrote is ever removed)
            except OSError:
                pass
        raise


def _publish(staging: Path, directory: Path) -> None:
    """Move what was written up into `directory` (renames within one file system), then remove the staging
    directory; a name the user created meanwhile is refused, not replaced."""
    written = sorted(p.name for p in staging.iterdir() if p.name != _COMMAND)
    taken = [n for n in written if (directory / n).exists() or (directory / n).is_symlink()]
    if taken:
        raise InputError(f"{directory}: {_listing(taken)} appeared there while albert was writing; nothing was "
                         f"replaced, choose a new or empty --out")
    for name in written:
        os.replace(staging / name, directory / name)
    _remove(staging)


def _remove(staging: Path) -> None:
    """Remove a staging directory (everything in it was written by albert), or the marker file of earlier
    releases."""
    if staging.is_dir() and not staging.is_symlink():
        shutil.rmtree(staging, ignore_errors=True)
    else:
        staging.unlink(missing_ok=True)


def check_new_file(path: str | Path, hint: str = "choose another --out or remove it") -> None:
    """InputError when `path` exists: an output file never replaces one."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a directory; expected a new file name")
    if path.exists():
        raise InputError(f"{path} already exists: {hint}")
