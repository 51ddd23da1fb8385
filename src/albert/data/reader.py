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
from typing import IO


class DataError(ValueError):
    """Input data that cannot be read, with the file (and line) it came from."""


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


def iter_lines(path: str | Path, field: str = "text") -> Iterator[str]:
    """Lines of text; for .jsonl and .parquet the `field` of each row (its lines, blank line after each row,
    so that one row is one document)."""
    kind = base_suffix(path)
    if kind == ".parquet":
        yield from _iter_parquet(Path(path), field)
        return
    try:
        with open_text(path) as f:
            if kind in (".jsonl", ".json"):
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise DataError(f"{path}:{n}: invalid JSON ({e.msg})") from None
                    if not isinstance(row, dict) or not isinstance(row.get(field), str):
                        raise DataError(f"{path}:{n}: expected an object with a string field {field!r}")
                    yield from row[field].splitlines()
                    yield ""
            else:
                for line in f:
                    yield line.rstrip("\n").rstrip("\r")
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None


def _iter_parquet(path: Path, field: str) -> Iterator[str]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path}: reading parquet needs pyarrow (pip install 'albert[data]')") from None
    try:
        pf = pq.ParquetFile(path)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable parquet file ({e})") from None
    if field not in pf.schema_arrow.names:
        raise DataError(f"{path}: no column {field!r} (columns: {', '.join(pf.schema_arrow.names)})")
    for batch in pf.iter_batches(columns=[field]):
        for value in batch.column(0).to_pylist():
            if value:
                yield from str(value).splitlines()
                yield ""


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
