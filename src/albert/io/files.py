"""Reading files: .txt (one sentence or paragraph per line), .jsonl and .parquet rows, whole JSON documents,
compressed with gzip, xz or bz2 or not.

Text is UTF-8 (a BOM is accepted): bytes that are not are an error naming the file and line, never
replaced silently. A corrupt archive, JSON nested too deep, NaN/Infinity and integers of thousands of
digits are one-line DataErrors too.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import stat
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from albert.errors import ConfigError, DataError

# what a broken or truncated archive raises while it is read
_ARCHIVE_ERRORS = (OSError, EOFError, lzma.LZMAError, zlib.error)


def require_file(path: Path) -> None:
    """A regular file, checked by type before it is opened: a FIFO or a device would block or never end, a symlink
    loop would raise on open; each is one line."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as e:  # a symlink loop, a path through a file, no permission
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from None
    if stat.S_ISDIR(mode):
        raise DataError(f"{path} is a directory; expected a file")
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) \
            else "a socket" if stat.S_ISSOCK(mode) else "not a regular file"
        raise DataError(f"{path} is {kind}; expected a regular file")


def _open_binary(path: Path) -> IO[bytes]:
    require_file(path)
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if suffix == ".xz":
        return lzma.open(path, "rb")  # type: ignore[return-value]
    if suffix == ".bz2":
        return bz2.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _not_utf8(path: Path, line: int, byte: int, column: int | None = None) -> DataError:
    at = "" if column is None else f" at column {column}"
    return DataError(f"{path}:{line}: not UTF-8 text (byte 0x{byte:02x}{at}); convert the file to UTF-8 (e.g. iconv "
                     "-f latin1 -t utf-8)")


def _decode(raw: bytes, path: Path, n: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _not_utf8(path, n, raw[e.start], e.start + 1) from None


def iter_text_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, line without its line break) of a text file, decoded strictly as UTF-8."""
    path = Path(path)
    try:
        with _open_binary(path) as f:
            for n, raw in enumerate(f, 1):
                if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                yield n, _decode(raw, path, n).rstrip("\n").rstrip("\r")
    except _ARCHIVE_ERRORS as e:
        raise DataError(f"{path}: cannot read ({_reason(e)})") from None


def read_text(path: str | Path) -> str:
    """A whole text file, strict UTF-8 (the error names the line of the first bad byte)."""
    path = Path(path)
    try:
        with _open_binary(path) as f:
            raw = f.read()
    except _ARCHIVE_ERRORS as e:
        raise DataError(f"{path}: cannot read ({_reason(e)})") from None
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _not_utf8(path, raw.count(b"\n", 0, e.start) + 1, raw[e.start]) from None


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}"[:200] if text else type(e).__name__


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(text: str, where: str) -> Any:
    """JSON as albert reads it everywhere: standard JSON only (no NaN/Infinity), integers of at most 4,300
    digits, nesting up to Python's recursion limit — each violation one DataError naming `where`."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: invalid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except RecursionError:  # json's C scanner counts its depth against the recursion limit: no crash
        raise DataError(f"{where}: JSON nested too deep (thousands of levels)") from None
    except ValueError as e:  # NaN/Infinity; an integer past Python's digit limit
        message = str(e).split(";")[0]
        if "integer string conversion" in message or "Exceeds the limit" in message:
            message = "an integer of more than 4,300 digits"
        raise DataError(f"{where}: invalid JSON ({message})") from None


def is_array(value: Any) -> bool:
    """Whether JSON writes `value` as an array: a list or tuple, or a compact sequence of albert's own
    (albert.tasks.tokens.Entities), which json.dumps does not take and json_pieces does."""
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray))


def json_pieces(value: Any, per: int = 1000) -> Iterator[str]:
    """The text json.dumps(value, ensure_ascii=False, allow_nan=False) gives, in pieces of about `per` list elements:
    a long answer (a text of millions of characters has hundreds of thousands of entities) is written, or sent, as
    it is encoded, never held twice as one string. Any sequence is written as a list (is_array)."""
    array = is_array(value)
    if not array or len(value) <= per and not any(is_array(v) for v in value):
        yield json.dumps(list(value) if array else value, ensure_ascii=False, allow_nan=False)
        return
    yield "["
    for start in range(0, len(value), per):
        batch = value[start:start + per]
        if any(is_array(v) for v in batch):  # answers of several inputs: each its own pieces
            for n, item in enumerate(batch):
                if start + n:
                    yield ", "
                yield from json_pieces(item, per)
        else:
            yield (", " if start else "") + ", ".join(json.dumps(v, ensure_ascii=False, allow_nan=False)
                                                      for v in batch)
    yield "]"


def read_json(path: str | Path) -> Any:
    """A whole JSON document (SQuAD, RACE), checked as parse_json."""
    return parse_json(read_text(path), str(path))


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
            raise DataError(f"{path}: reading parquet needs pyarrow (pip install 'albert-lm[data]')") from None
        try:
            pf = pq.ParquetFile(path)
            n = 0
            for batch in pf.iter_batches():
                for row in batch.to_pylist():
                    n += 1
                    yield n, row
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: not a readable parquet file ({_reason(e)})") from None
        return
    if kind != ".jsonl":
        raise DataError(f"{path}: expected .jsonl or .parquet, got {kind or '(no suffix)'}")
    for n, line in iter_text_lines(path):
        if not line.strip():
            continue
        row = parse_json(line, f"{path}:{n}")
        if not isinstance(row, dict):
            raise DataError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
        yield n, row


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
    for _, line in iter_text_lines(path):
        yield line


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


INPUT_FORMATS = (".txt", ".jsonl", ".csv", ".tsv", ".parquet")


def iter_inputs(path: str | Path) -> Iterator[tuple[str, Any]]:
    """(where, input) of an inference command's --file: .txt (one text per line), .jsonl (a text or an object per
    line), .csv/.tsv (a header row, then one object per row) or .parquet (one object per row); compressed or
    not. Blank lines are skipped."""
    import csv

    path = Path(path)
    require_file(path)  # before parquet, which pyarrow opens itself
    kind = base_suffix(path)
    if kind == ".txt":
        for n, line in iter_text_lines(path):
            if line.strip():
                yield f"{path}:{n}", line
    elif kind == ".jsonl":
        for n, line in iter_text_lines(path):
            if line.strip():
                yield f"{path}:{n}", parse_json(line, f"{path}:{n}")
    elif kind == ".parquet":
        for n, row in iter_records(path):
            yield f"{path}: row {n}", row
    elif kind in (".csv", ".tsv"):
        lines = (line for _, line in iter_text_lines(path))
        reader = csv.reader(lines, delimiter="\t" if kind == ".tsv" else ",")
        try:
            header = next(reader, None)
            if header is None:
                return
            for n, cells in enumerate(reader, 2):
                if not any(cells):
                    continue
                if len(cells) != len(header):
                    raise DataError(f"{path}:{n}: {len(cells)} columns, but the header has {len(header)} "
                                    f"({', '.join(header[:6])})")
                yield f"{path}:{n}", dict(zip(header, cells))
        except csv.Error as e:
            raise DataError(f"{path}: not readable as {kind[1:].upper()} ({e})") from None
    else:
        raise DataError(f"{path}: unsupported input format {kind or '(no suffix)'}; use "
                        f"{', '.join(INPUT_FORMATS)} (optionally .gz/.xz/.bz2)")


_TYPE_NAMES = {dict: "an object", list: "a list", str: "a string", int: "an integer", bool: "true or false"}


def expect(value: Any, kind: type, where: str) -> Any:
    """`value` when it is of JSON type `kind` (an int is never a bool here), else a DataError naming `where` (a
    file and JSON path: "squad.json: data[0].paragraphs[2].context")."""
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        got = "null" if value is None else _TYPE_NAMES.get(type(value), type(value).__name__)
        raise DataError(f"{where} must be {_TYPE_NAMES.get(kind, kind.__name__)}, got {got}")
    return value


def field_of(obj: dict[str, Any], name: str, kind: type, where: str, default: Any = ...) -> Any:
    """obj[name] checked as `expect`; missing is an error unless a default is given."""
    if name not in obj or (obj[name] is None and default is not ...):
        if default is ...:
            raise DataError(f"{where}: no {name!r}")
        return default
    return expect(obj[name], kind, f"{where}.{name}")


# a model directory's JSON files (config, weight index, tokenizer) are read whole: larger is not one of them
MAX_MODEL_JSON_BYTES = 512 * 1024 * 1024


def read_model_json(path: Path, max_bytes: int = MAX_MODEL_JSON_BYTES) -> Any:
    """A JSON file of a model directory: a regular file (a FIFO, a device or a symlink loop is refused by its type
    before it is opened), of at most `max_bytes`, UTF-8, standard JSON, each fault one error naming the file."""
    return parse_json(read_model_text(path, max_bytes), str(path))


def read_model_text(path: Path, max_bytes: int = MAX_MODEL_JSON_BYTES) -> str:
    """A text file of a model directory (a vocabulary, a JSON file): a regular file of at most `max_bytes`, UTF-8."""
    require_file(path)
    if path.stat().st_size > max_bytes:
        raise ConfigError(f"{path}: {path.stat().st_size:,} bytes; a model directory's text file is at most "
                          f"{max_bytes:,}")
    return read_text(path)
