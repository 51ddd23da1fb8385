"""Task files → rows (dicts). Every bad row is an error naming its file and line.

Formats: JSONL (the fields of ../shared/data/tasks and of hub exports), Parquet with the same
columns, and GLUE's TSV layouts (CoLA, SST-2, MRPC, STS-B, QQP, MNLI, QNLI, RTE, WNLI).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from albert.errors import DataError
from albert.io.files import base_suffix, iter_records, iter_text_lines, read_json

# GLUE TSV layouts: (text column(s), label column, has header). Columns are by header name or index.
GLUE_TSV: dict[str, tuple[tuple[str | int, ...], str | int | None, bool]] = {
    "cola": ((3,), 1, False),
    "sst-2": (("sentence",), "label", True),
    "mrpc": (("#1 String", "#2 String"), "Quality", True),
    "sts-b": (("sentence1", "sentence2"), "score", True),
    "qqp": (("question1", "question2"), "is_duplicate", True),
    "mnli": (("sentence1", "sentence2"), "gold_label", True),
    "qnli": (("question", "sentence"), "label", True),
    "rte": (("sentence1", "sentence2"), "label", True),
    "wnli": (("sentence1", "sentence2"), "label", True),
}


def read_rows(path: str | Path, tsv_layout: str | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) for each example; TSV rows are mapped to text/text_pair/label."""
    path = Path(path)
    kind = base_suffix(path)
    if kind in (".jsonl", ".parquet"):
        yield from iter_records(path)
    elif kind == ".tsv":
        yield from _read_glue_tsv(path, tsv_layout)
    else:
        raise DataError(f"{path}: unsupported format {kind or '(none)'}; use .jsonl, .parquet or GLUE .tsv")


def listed_labels(path: str | Path) -> list[str] | None:
    """The label names a meta.json beside a task file lists (the shared tasks and hub exports have one), if any."""
    meta = Path(path).parent / "meta.json"
    if not meta.is_file():
        return None
    doc = read_json(meta)
    listed = doc.get("labels") if isinstance(doc, dict) else None
    if listed is None:
        return None
    if not isinstance(listed, list) or not all(isinstance(x, (str, int)) and not isinstance(x, bool)
                                                for x in listed):
        raise DataError(f"{meta}: 'labels' must be a list of names")
    return [str(x) for x in listed] or None


def _read_glue_tsv(path: Path, layout: str | None) -> Iterator[tuple[int, dict[str, Any]]]:
    name = (layout or _guess_glue(path)).lower()
    if name not in GLUE_TSV:
        raise DataError(f"{path}: unknown GLUE layout {name!r}; pass one of {', '.join(GLUE_TSV)}")
    text_cols, label_col, header = GLUE_TSV[name]
    reader = csv.reader((line for _, line in iter_text_lines(path)), delimiter="\t", quoting=csv.QUOTE_NONE)
    names: list[str] = next(reader, []) if header else []
    width = len(names) if header else None
    for n, cells in enumerate(reader, 2 if header else 1):
        if not cells or not any(cells):
            continue
        if width is None:
            width = len(cells)  # a file without a header: its first row sets the width
        if len(cells) != width:  # a stray tab would shift the label column: a new class, silently
            first = "header has" if header else "first row has"
            raise DataError(f"{path}:{n}: {len(cells)} columns, but the {first} {width}")

        def cell(col: str | int, required: bool = True, cells: list[str] = cells, n: int = n) -> str | None:
            return _cell(path, name, names, cells, n, col, required)

        row: dict[str, Any] = {"text": cell(text_cols[0])}
        if len(text_cols) > 1:
            row["text_pair"] = cell(text_cols[1])
        if label_col is not None:
            label = cell(label_col, required=False)  # GLUE test files have no labels
            if label is not None:
                row["label"] = label
        yield n, row


def _cell(path: Path, layout: str, names: list[str], cells: list[str], n: int, col: str | int,
          required: bool) -> str | None:
    i = col if isinstance(col, int) else (names.index(col) if col in names else -1)
    if i < 0:
        raise DataError(f"{path}: no column {col!r} in the header (a {layout} TSV?)")
    if i >= len(cells):
        if required:
            raise DataError(f"{path}:{n}: expected at least {i + 1} columns, got {len(cells)}")
        return None
    return cells[i]


def _guess_glue(path: Path) -> str:
    parts = [p.lower() for p in path.parts]
    for name in GLUE_TSV:
        if any(name == p or name.replace("-", "") == p for p in parts):
            return name
    raise DataError(f"{path}: cannot tell which GLUE task this TSV is; pass --tsv-layout NAME")
