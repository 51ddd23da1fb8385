"""The command line and the fill-mask pipeline, on a tiny model pretrained in the test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import albert

ALBERT = [sys.executable, "-m", "albert.cli"]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*ALBERT, *args], capture_output=True, text=True, timeout=120)


def test_fill_mask_matches_transformers_pipeline(tiny_model: Path, record_property: Any) -> None:
    """The same tokens and probabilities as transformers' fill-mask pipeline on the same model; the strings are
    albert's own (the piece decoded, and the text with the mask filled); whether transformers' strings agree is
    recorded, not asserted."""
    import transformers

    text = "the whale and the [MASK] of the sea"
    ours = albert.pipeline("fill-mask", model=tiny_model, precision="fp32")
    got = ours(text, top_k=5)
    assert ours.model is not None and ours.tokenizer is not None
    theirs = transformers.pipeline("fill-mask", model=str(tiny_model), tokenizer=str(tiny_model), device="cpu")
    special = set(ours.tokenizer.all_special_ids)
    expected = [r for r in theirs(text, top_k=30) if r["token"] not in special][:5]
    assert [r["token"] for r in got] == [r["token"] for r in expected]
    for a, b in zip(got, expected):
        assert abs(a["score"] - b["score"]) < 1e-5
    tok = ours.tokenizer
    ids = tok.encode(text, add_special_tokens=False)
    at = ids.index(tok.mask_token_id)
    for r in got:
        assert r["token_str"] == tok.decode([r["token"]])
        assert r["sequence"] == tok.decode(ids[:at] + [r["token"]] + ids[at + 1:])
    record_property("transformers_strings_equal", [(r["token_str"], r["sequence"]) for r in got] == [
        (r["token_str"], r["sequence"]) for r in expected])


def test_fill_mask_cli_json_and_several_masks(tiny_model: Path, albert_cli: Any) -> None:
    out = cli("fill-mask", "the [MASK] and the [MASK].", "--model", str(tiny_model), "--top-k", "3", "--json",
              "--precision", "fp32")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert len(result) == 2 and all(len(group) == 3 for group in result)
    for group in result:
        for r in group:
            assert set(r) == {"sequence", "score", "token", "token_str"} and 0 < r["score"] <= 1
            assert r["sequence"].count("[MASK]") == 1  # only this mask is filled
    text_out = albert_cli("fill-mask", "a [MASK].", "--model", str(tiny_model))
    assert text_out.returncode == 0 and len(text_out.stdout.strip().splitlines()) == 5


def test_int8_cli_prints_answers_only(tiny_model: Path) -> None:
    """torch's deprecation warning about its quantized tensors (the int8 path uses them) is not shown to users."""
    out = cli("fill-mask", "a [MASK].", "--model", str(tiny_model), "--precision", "int8", "--top-k", "2")
    assert out.returncode == 0 and len(out.stdout.strip().splitlines()) == 2, out.stderr
    assert out.stderr == "", out.stderr


def test_fill_mask_cli_several_inputs_one_json_line_each(tiny_model: Path, tmp_path: Path, albert_cli: Any) -> None:
    texts = ["call me [MASK].", "the [MASK] and the [MASK].", "a [MASK]"]
    fm = albert.pipeline("fill-mask", model=tiny_model, precision="fp32")
    expected = [fm(t, top_k=2) for t in texts]
    (tmp_path / "in.jsonl").write_text(f'"{texts[0]}"\n{{"text": "{texts[1]}"}}\n"{texts[2]}"\n')
    for args, stdin in (((*texts,), None), (("--file", str(tmp_path / "in.jsonl")), None), ((), "\n".join(texts))):
        out = albert_cli("fill-mask", *args, "--model", str(tiny_model), "--precision", "fp32", "--top-k", "2",
                         "--json", stdin=stdin or "")
        assert out.returncode == 0, out.stderr
        got = [json.loads(line) for line in out.stdout.splitlines()]

        def flat(answers: list) -> list:
            return [r for a in answers for group in (a if isinstance(a[0], list) else [a]) for r in group]

        assert [r["token"] for r in flat(got)] == [r["token"] for r in flat(expected)]
        assert np.allclose([r["score"] for r in flat(got)], [r["score"] for r in flat(expected)], atol=1e-5)


@pytest.mark.parametrize(
    "args,message",
    [
        (["fill-mask", "no mask here"], "no [MASK]"),
        (["fill-mask", "word " * 600 + "the [MASK]."], "its [MASK] is past the model's 128-token limit"),
        (["fill-mask", "x [MASK]", "--model", "/nonexistent/model"], "cannot load"),
        (["tokenize", "x", "--tokenizer", "/nonexistent"], "cannot load"),
        (["pretrain", "--data", "/nonexistent"], "not a prepared data directory"),
        (["pretrain", "--data", "x", "--no_such_setting", "1"], "unknown setting"),
        (["plot", "/nonexistent"], "no metrics.jsonl"),
        (["fill-mask", "x [MASK]", "--device", "tpu"], "unknown device 'tpu'"),
        (["embed", "x", "--device", "meta"], "device 'meta' is not supported"),
    ],
)
def test_errors_are_one_line_with_status_2(tiny_model: Path, args: list[str], message: str, albert_cli: Any) -> None:
    if args[0] == "fill-mask" and "--model" not in args:
        args = [*args, "--model", str(tiny_model)]
    out = albert_cli(*args)  # (in-process: test_tokenizer_train... runs the exit-2 class as a subprocess)
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
    assert out.returncode == 0, out.stderr
    from albert.data.shards import read_meta

    meta = read_meta(tmp_path / "d")  # what it prints is what it wrote: documents and tokens of each split
    assert set(meta["splits"]) == {"train", "eval"} and all(meta["splits"][k] for k in ("train", "eval"))
    assert meta["documents"]["train"] > 9 * meta["documents"]["eval"] > 0  # (eval_fraction's default 0.01-0.1)
    for split in ("train", "eval"):
        assert f"{meta['documents'][split]:,}" in out.stdout and f"{meta['tokens'][split]:,}" in out.stdout, out.stdout


def test_outputs_are_never_overwritten_or_deleted(tmp_path: Path, albert_cli: Any) -> None:
    """An --out that holds the user's files or an earlier result is refused with one line; nothing in it is lost
    (an empty corpus once deleted the whole --out directory)."""
    text = Path(__file__).parent / "fixtures" / "public_domain.txt"
    assert cli("tokenizer", "train", "--input", str(text), "--vocab-size", "300", "--out", str(tmp_path / "t"),
               "--quiet").returncode == 0
    before = (tmp_path / "t" / "spiece.model").read_bytes()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    (tmp_path / "empty.txt").write_text("")
    cases = [
        (("tokenizer", "train", "--input", str(text), "--vocab-size", "200", "--out", str(tmp_path / "t")),
         "is not empty (special_tokens_map.json, spiece.model"),
        (("data", "prepare", "--input", str(tmp_path / "empty.txt"), "--tokenizer", str(tmp_path / "t"), "--out",
          str(mine)), "is not empty (notes.txt)"),
        (("data", "prepare", "--input", str(text), "--tokenizer", str(tmp_path / "t"), "--out", str(mine)),
         "is not empty"),
        (("data", "prepare", "--input", str(tmp_path / "empty.txt"), "--tokenizer", str(tmp_path / "t"), "--out",
          str(tmp_path / "new")), "corpus is empty"),
    ]
    for args, message in cases:
        out = albert_cli(*args, "--quiet")
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1 and message in lines[0], out.stderr
    (tmp_path / "rows.jsonl").write_text('{"body": "call me ishmael."}\n')
    for args in (("tokenizer", "train", "--out", str(tmp_path / "t2")),
                 ("data", "prepare", "--tokenizer", str(tmp_path / "t"), "--out", str(tmp_path / "d2"))):
        out = cli(*args, "--input", str(tmp_path / "rows.jsonl"), "--quiet")  # (exit 2, as a real process)
        assert out.returncode == 2 and "rows.jsonl:1: no field 'text' (fields: body)" in out.stderr, out.stderr
    assert not (tmp_path / "t2").exists() and not (tmp_path / "d2").exists()  # a failed prepare leaves nothing
    assert (tmp_path / "t" / "spiece.model").read_bytes() == before
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_text() == "keep me"
    assert not (tmp_path / "new").exists()  # made by the failed call, so removed by it


def test_plot(tiny_model: Path, tmp_path: Path, albert_cli: Any) -> None:
    out = cli("plot", str(tiny_model.parent), "--out", str(tmp_path / "c.png"))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "run").mkdir()
    for record, message in (('{"step": "x"}', "not a metrics record"), ('[1]', "not a metrics record"),
                            ('{"step": 1}', "none of loss")):
        (tmp_path / "run" / "metrics.jsonl").write_text(record + "\n")
        out = albert_cli("plot", str(tmp_path / "run"))
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_fill_mask_through_onnxruntime_reads_the_safetensors_weights(tiny_model: Path, tmp_path: Path,
                                                                     albert_cli: Any) -> None:
    """`export onnx --share-weights` stores the graph only; the ONNX Runtime engine answers as PyTorch does, and
    a re-saved model.safetensors (bytes moved) is detected and answered through PyTorch instead."""
    import onnx

    from albert.inference.fast_fill_mask import OnnxFillMaskPipeline, OnnxUnavailable

    model_dir = tmp_path / "m"
    model_dir.mkdir()
    for f in tiny_model.iterdir():
        if f.is_file():
            (model_dir / f.name).write_bytes(f.read_bytes())
    out = albert_cli("export", "onnx", "--model", str(model_dir), "--out", str(model_dir / "model.onnx"),
                     "--architecture", "AlbertForMaskedLM", "--share-weights")
    assert out.returncode == 0, out.stderr
    graph = onnx.load(str(model_dir / "model.onnx"), load_external_data=False)
    external = {i.name for i in graph.graph.initializer if i.data_location == onnx.TensorProto.EXTERNAL}
    # (the exporter folds a tiny model's small matrices into per-pass constants; see the embedded model's test)
    assert any("word_embeddings" in n or "decoder" in n for n in external) and len(external) >= 15

    texts = ["the whale and the [MASK] of the sea", "[MASK] me ishmael , said the [MASK] ."]
    fast = OnnxFillMaskPipeline(model_dir)
    torch_fm = albert.pipeline("fill-mask", model=model_dir, precision="fp32")
    for text in texts:
        got, want = fast(text, top_k=5), torch_fm(text, top_k=5)
        flat = lambda r: r if isinstance(r[0], dict) else [x for g in r for x in g]  # noqa: E731
        assert [(r["token"], r["sequence"]) for r in flat(got)] == [(r["token"], r["sequence"]) for r in flat(want)]
        assert max(abs(a["score"] - b["score"]) for a, b in zip(flat(got), flat(want))) < 1e-5
    probe = [sys.executable, "-c", "import sys, json; from albert.cli import main; rc = main(sys.argv[1:]); "
             "print(json.dumps({'rc': rc, 'torch': 'torch' in sys.modules}), file=sys.stderr)",
             "fill-mask", texts[0], "--model", str(model_dir), "--json"]
    run = subprocess.run(probe, capture_output=True, text=True, timeout=120)
    assert json.loads(run.stderr.strip().splitlines()[-1]) == {"rc": 0, "torch": False}, run.stderr
    assert [r["token"] for r in json.loads(run.stdout)] == [r["token"] for r in torch_fm(texts[0], top_k=5)]

    changed = albert.AlbertForMaskedLM.from_pretrained(model_dir)
    with torch.no_grad():
        changed.albert.embeddings.LayerNorm.bias.add_(0.5)
    changed.save_pretrained(model_dir)
    with pytest.raises(OnnxUnavailable, match="other weights|cannot load"):
        OnnxFillMaskPipeline(model_dir)
    auto = albert_cli("fill-mask", texts[0], "--model", str(model_dir), "--json", "--top-k", "3")
    assert auto.returncode == 0, auto.stderr
    now = albert.pipeline("fill-mask", model=model_dir, precision="fp32")(texts[0], top_k=3)
    assert [r["token"] for r in json.loads(auto.stdout)] == [r["token"] for r in now]
    forced = albert_cli("fill-mask", texts[0], "--model", str(model_dir), "--engine", "onnxruntime")
    assert forced.returncode == 2 and forced.stderr.count("\n") == 1
    assert "other weights" in forced.stderr or "cannot load" in forced.stderr
    mixed = albert_cli("fill-mask", texts[0], "--model", str(model_dir), "--engine", "onnxruntime", "--precision",
                       "bf16")
    assert mixed.returncode == 2 and "fp32 on the CPU" in mixed.stderr


def test_embedded_model_ships_a_graph_that_reads_its_weights() -> None:
    """The default model answers through ONNX Runtime: its model.onnx matches its weights and stores none of the
    large ones (the shared layer and the embeddings are read from model.safetensors)."""
    import onnx

    from albert.inference.fast_fill_mask import OnnxFillMaskPipeline
    from albert.io.hub import packaged_models_dir

    directory = packaged_models_dir() / "albert-small-en"
    graph = onnx.load(str(directory / "model.onnx"), load_external_data=False)
    inline = [i for i in graph.graph.initializer if i.data_location != onnx.TensorProto.EXTERNAL]
    assert all(int(np.prod(i.dims)) <= 128 * 512 for i in inline)  # only the exporter's folded small copies
    assert (directory / "model.onnx").stat().st_size < (directory / "model.safetensors").stat().st_size / 10
    text = "the [MASK] of the sea ."
    fast = OnnxFillMaskPipeline(directory)(text, top_k=3)
    want = albert.pipeline("fill-mask", model=directory, precision="fp32")(text, top_k=3)
    assert [r["token"] for r in fast] == [r["token"] for r in want]
    assert np.allclose([r["score"] for r in fast], [r["score"] for r in want], atol=1e-4)
