"""Task file layouts: GLUE TSV, RACE JSON, hub-style Parquet — each read into the same rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from albert.errors import DataError
from albert.tasks.choice import read_questions
from albert.tasks.readers import read_rows
from albert.tasks.sequence import read_examples


def test_glue_tsv_layouts(tmp_path: Path) -> None:
    (tmp_path / "MRPC").mkdir()
    mrpc = tmp_path / "MRPC" / "dev.tsv"
    mrpc.write_text("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tHe said so .\tHe stated it .\n"
                    "0\t3\t4\tA cat .\tA dog .\n")
    rows = [r for _, r in read_rows(mrpc)]
    assert rows == [{"text": "He said so .", "text_pair": "He stated it .", "label": "1"},
                    {"text": "A cat .", "text_pair": "A dog .", "label": "0"}]
    ex, fields = read_examples(mrpc, "classification", ["0", "1"])
    assert fields == ("text", "text_pair") and [e.label for e in ex] == [1, 0]
    cola = tmp_path / "in_domain_dev.tsv"
    cola.write_text("gj04\t1\t\tThe sailors rode the breeze clear of the rocks.\nclc95\t0\t*\tThe more books.\n")
    assert [r for _, r in read_rows(cola, "cola")][1] == {"text": "The more books.", "label": "0"}
    stsb = tmp_path / "sts.tsv"
    stsb.write_text("index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
                    "0\tmain\tx\t2012\t0\tnone\tnone\tA plane takes off.\tAn air plane is taking off.\t5.000\n")
    ex, _ = read_examples(stsb, "regression", None, tsv_layout="sts-b")
    assert ex[0].label == 5.0 and ex[0].pair == "An air plane is taking off."
    with pytest.raises(DataError, match="cannot tell which GLUE task"):
        list(read_rows(tmp_path / "in_domain_dev.tsv"))
    short = tmp_path / "MRPC" / "bad.tsv"
    short.write_text("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tonly one sentence\n")
    with pytest.raises(DataError, match=r"bad.tsv:2: 4 columns, but the header has 5"):
        list(read_rows(short))


def test_race_json_and_letters(tmp_path: Path) -> None:
    race = tmp_path / "1.json"
    race.write_text(json.dumps({"article": "Tom had a red kite.", "questions": ["What colour was the kite?",
                                                                              "Tom had a _ ."],
                                "options": [["red", "blue", "green", "black"], ["kite", "dog", "car", "hat"]],
                                "answers": ["A", "A"], "id": "1.txt"}))
    qs = read_questions(race)
    assert [q.label for q in qs] == [0, 0] and qs[1].question == "Tom had a _ ."
    jl = tmp_path / "mc.jsonl"
    jl.write_text(json.dumps({"article": "a", "question": "b", "options": ["x", "y", "z", "w"], "label": "C"}) + "\n")
    assert read_questions(jl)[0].label == 2


def test_parquet_rows(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"sentence1": ["a b", "c d"], "sentence2": ["e", "f"], "label": [1, 0]}),
                   tmp_path / "validation.parquet")
    ex, fields = read_examples(tmp_path / "validation.parquet", "classification", ["0", "1"])
    assert fields == ("sentence1", "sentence2") and [e.label for e in ex] == [1, 0]


@pytest.mark.parametrize("blank", ["", " ", "\t", "\u3000", "\n"])
def test_a_blank_token_is_named_by_file_line_and_index(tmp_path: Path, blank: str) -> None:
    """A token with no character but whitespace makes no piece of its own: its label would be lost. Refused."""
    import subprocess
    import sys

    from albert.tasks.tokens import read_tagged

    path = tmp_path / "tags.jsonl"
    path.write_text(json.dumps({"tokens": ["the", "whale"], "tags": ["O", "B-ANIMAL"]}) + "\n"
                    + json.dumps({"tokens": ["a", blank, "sea"], "tags": ["O", "B-X", "O"]}) + "\n")
    with pytest.raises(DataError, match=r"tags.jsonl:2: token 1 is .*every token must have a character other"):
        read_tagged(path)
    out = subprocess.run([sys.executable, "-m", "albert", "finetune", "--task", "token-classification", "--train",
                          str(path), "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "tags.jsonl:2: token 1" in out.stderr, out.stderr
    assert not (tmp_path / "out").exists()


def test_json_pieces_join_to_json_dumps() -> None:
    """A long answer written or sent in pieces is the text json.dumps gives, byte for byte."""
    import json

    from albert.io.files import json_pieces

    values = [[], [1.5], [{"a": 1.5, "word": "é"}] * 2500, [[{"x": n} for n in range(1500)], [], [1, 2]],
              {"a": [1] * 5000}, "text", [[1] * 3] * 3, [[]], [[{"a": 1}] * 1001] * 2]
    for value in values:
        assert "".join(json_pieces(value)) == json.dumps(value, ensure_ascii=False)
    assert len(list(json_pieces([{"a": 1}] * 2500))) == 5  # "[", three batches, "]"
