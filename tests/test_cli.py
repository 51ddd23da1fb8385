"""The command line and the fill-mask pipeline, on a tiny model pretrained in the test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import albert

ALBERT = [sys.executable, "-m", "albert.cli"]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*ALBERT, *args], capture_output=True, text=True, timeout=120)


def test_fill_mask_matches_transformers_pipeline(tiny_model: Path) -> None:
    transformers = pytest.importorskip("transformers")
    text = "the whale and the [MASK] of the sea"
    ours = albert.pipeline("fill-mask", model=tiny_model, precision="fp32")
    got = ours(text, top_k=5)
    assert ours.model is not None and ours.tokenizer is not None
    theirs = transformers.pipeline("fill-mask", model=str(tiny_model), tokenizer=str(tiny_model), device="cpu")
    special = set(ours.tokenizer.all_special_ids)
    expected = [r for r in theirs(text, top_k=30) if r["token"] not in special][:5]
    assert [r["token"] for r in got] == [r["token"] for r in expected]
    assert [r["token_str"] for r in got] == [r["token_str"] for r in expected]
    assert [r["sequence"] for r in got] == [r["sequence"] for r in expected]
    for a, b in zip(got, expected):
        assert abs(a["score"] - b["score"]) < 1e-5


def test_fill_mask_cli_json_and_several_masks(tiny_model: Path) -> None:
    out = cli("fill-mask", "the [MASK] and the [MASK].", "--model", str(tiny_model), "--top-k", "3", "--json",
              "--precision", "fp32")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert len(result) == 2 and all(len(group) == 3 for group in result)
    for group in result:
        for r in group:
            assert set(r) == {"sequence", "score", "token", "token_str"} and 0 < r["score"] <= 1
            assert r["sequence"].count("[MASK]") == 1  # only this mask is filled
    text_out = cli("fill-mask", "a [MASK].", "--model", str(tiny_model))
    assert text_out.returncode == 0 and len(text_out.stdout.strip().splitlines()) == 5


@pytest.mark.parametrize(
    "args,message",
    [
        (["fill-mask", "no mask here"], "no [MASK]"),
        (["fill-mask", "x [MASK]", "--model", "/nonexistent/model"], "cannot load"),
        (["tokenize", "x", "--tokenizer", "/nonexistent"], "cannot load"),
        (["pretrain", "--data", "/nonexistent"], "not a prepared data directory"),
        (["pretrain", "--data", "x", "--no_such_setting", "1"], "unknown setting"),
        (["plot", "/nonexistent"], "no metrics.jsonl"),
    ],
)
def test_errors_are_one_line_with_status_2(tiny_model: Path, args: list[str], message: str) -> None:
    if args[0] == "fill-mask" and "--model" not in args:
        args = [*args, "--model", str(tiny_model)]
    out = cli(*args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("albert: error:") and message in lines[0], out.stderr


def test_tokenize_cli(tiny_model: Path) -> None:
    out = cli("tokenize", "Héllo, [MASK] world", "--pair", "second", "--tokenizer", str(tiny_model), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    tok = albert.AlbertTokenizer.from_pretrained(tiny_model)
    assert data["ids"] == tok.encode("Héllo, [MASK] world", "second")
    assert len(data["pieces"]) == len(data["offsets"]) == len(data["token_type_ids"])
    assert data["pieces"][0] == "[CLS]" and "[MASK]" in data["pieces"]


def test_tokenizer_train_and_data_prepare_cli(tmp_path: Path) -> None:
    text = Path(__file__).parent / "fixtures" / "public_domain.txt"
    out = cli("tokenizer", "train", "--input", str(text), "--vocab-size", "500", "--out", str(tmp_path / "t"),
              "--quiet")
    assert out.returncode == 0, out.stderr
    assert albert.AlbertTokenizer.from_pretrained(tmp_path / "t").vocab_size == 500
    out = cli("data", "prepare", "--input", str(text), "--tokenizer", str(tmp_path / "t"), "--out",
              str(tmp_path / "d"), "--workers", "1", "--quiet")
    assert out.returncode == 0, out.stderr and "train" in out.stdout


def test_plot(tiny_model: Path, tmp_path: Path) -> None:
    out = cli("plot", str(tiny_model.parent), "--out", str(tmp_path / "c.png"))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
