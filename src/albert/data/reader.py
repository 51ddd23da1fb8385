"""Reading raw text: .txt (one sentence or paragraph per line), .jsonl and .parquet with a text column,
compressed with gzip, xz or bz2 or not."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from albert.errors import DataError


def open_text(path: str | Path) -> IO[str]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    if suffix == ".xz":
        return io.TextIOWrapper(lzma.open(path, "rb"), encoding="utf-8", errors="replace")
    if suffix == ".bz2":
        return io.TextIOWrapper(bz2.open(path, "rb"), encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def base_suffix(path: str | Path) -> str:
    """".jsonl" for "x.jsonl.xz": the format under any compression suffix."""
    p = Path(path)
    if p.suffix.lower() in (".gz", ".xz", ".bz2"):
        p = p.with_suffix("")
    return p.suffix.lower()


def iter_records(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line or row number, record) of a .jsonl or .parquet file; bad rows are errors naming file and line."""
    path = Path(path)
    kind = base_suffix(path)
    if kind == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DataError(f"{path}: reading parquet needs pyarrow (pip install 'albert[data]')") from None
        try:
            pf = pq.ParquetFile(path)
            n = 0
            for batch in pf.iter_batches():
                for row in batch.to_pylist():
                    n += 1
                    yield n, row
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: not a readable parquet file ({e})") from None
        return
    if kind != ".jsonl":
        raise DataError(f"{path}: expected .jsonl or .parquet, got {kind or '(no suffix)'}")
    try:
        with open_text(path) as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{n}: invalid JSON ({e.msg})") from None
                if not isinstance(row, dict):
                    raise DataError(f"{path}:{n}: expected a JSON object")
                yield n, row
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None


def iter_lines(path: str | Path, field: str = "text") -> Iterator[str]:
    """Lines of text; for .jsonl and .parquet the `field` of each row (its lines, then a blank line,
    so that one row is one document)."""
    if base_suffix(path) in (".jsonl", ".parquet"):
        for n, row in iter_records(path):
            if field not in row:  # a wrong --field would otherwise read as an empty corpus
                fields = ", ".join(sorted(row)[:8]) or "none"
                raise DataError(f"{path}:{n}: no field {field!r} (fields: {fields}); name the text field with --field")
            value = row[field]
            if value is None:  # a null row (hub exports have some) is skipped
                continue
            if not isinstance(value, str):
                raise DataError(f"{path}:{n}: field {field!r} is not text")
            yield from value.splitlines()
            yield ""
        return
    try:
        with open_text(path) as f:
            for line in f:
                yield line.rstrip("\n").rstrip("\r")
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None


def iter_documents(path: str | Path, field: str = "text") -> Iterator[list[str]]:
    """Documents as lists of non-empty lines; a blank line ends a document."""
    doc: list[str] = []
    for line in iter_lines(path, field):
        if line.strip():
            doc.append(line.strip())
        elif doc:
            yield doc
            doc = []
    if doc:
        yield doc
