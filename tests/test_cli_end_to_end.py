"""The README's commands end to end, as a user runs them, on the toy tasks' fine-tuned models (conftest's
toy_models): predict, classify, answer (the answerability head, in bf16 and int8 too), tag, sentence-order, export
onnx --quantize int8 (values), finetune --resume after a kill, serve --task with --cors-origin."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import albert
from albert.train.finetune import predict_dir
from toy_tasks import wait_until_stopped


def cli(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "albert", *args], input=stdin, capture_output=True, text=True,
                          timeout=600, env=env)


def rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_predict_and_classify(toy_models: dict[str, tuple[Path, Path]]) -> None:
    model, dev = toy_models["classification"]
    out = cli("predict", "--model", str(model), "--data", str(dev), "--precision", "fp32")
    assert out.returncode == 0, out.stderr
    printed = [json.loads(x) for x in out.stdout.splitlines()]
    expected = predict_dir(model, dev, precision="fp32")  # in this process: another thread count, other sums
    assert len(printed) == len(expected) == len(rows(dev)) == 60
    assert all(p.keys() == e.keys() and p["label"] == e["label"] and p["score"] == pytest.approx(e["score"], abs=1e-5)
               for p, e in zip(printed, expected)), (printed, expected)
    right = sum(p["label"] == r["label"] for p, r in zip(printed, rows(dev)))
    assert right >= 45  # what the model learned (test_heads asks 0.75 of its dev rows)
    texts = [r["text"] for r in rows(dev)[:5]]
    out = cli("classify", *texts, "--model", str(model), "--precision", "fp32")
    assert out.returncode == 0, out.stderr
    assert [json.loads(x)["label"] for x in out.stdout.splitlines()] == [p["label"] for p in printed[:5]]


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_answer_with_the_answerability_head(toy_models: dict[str, tuple[Path, Path]], precision: str,
                                            albert_cli: Any) -> None:
    """`albert answer --allow-no-answer` on SQuAD 2.0's two kinds of question, scored apart: the answered ones get
    their span, the unanswerable ones "" — a head that never (or always) says "no answer" fails one half. The
    command runs as a subprocess once (fp32), in-process for the other precisions."""
    model, dev = toy_models["qa-v2"]
    questions = rows(dev)[:30]
    stdin = "".join(json.dumps({"question": r["question"], "context": r["context"]}) + "\n" for r in questions)
    args = ("answer", "--model", str(model), "--precision", precision, "--allow-no-answer")
    out = cli(*args, stdin=stdin) if precision == "fp32" else albert_cli(*args, stdin=stdin)
    assert out.returncode == 0, out.stderr
    answers = [json.loads(x) for x in out.stdout.splitlines()]
    assert len(answers) == 30
    answered = [(a["answer"], r["answers"]["text"][0]) for a, r in zip(answers, questions) if r["answers"]["text"]]
    unanswerable = [a["answer"] for a, r in zip(answers, questions) if not r["answers"]["text"]]
    assert len(answered) >= 15 and len(unanswerable) >= 5  # (the toy task's 30% share)
    assert sum(got == want for got, want in answered) >= 0.6 * len(answered), answers
    assert sum(got == "" for got in unanswerable) >= 0.6 * len(unanswerable), answers
    without = albert_cli(*args[:-1], stdin=stdin)  # without the flag, the best span is always given
    assert all(json.loads(x)["answer"] for x in without.stdout.splitlines())


def test_tag_finds_the_numbers(toy_models: dict[str, tuple[Path, Path]]) -> None:
    model, dev = toy_models["token-classification"]
    sentences = rows(dev)[:10]
    out = cli("tag", *[" ".join(r["tokens"]) for r in sentences], "--model", str(model), "--precision", "fp32")
    assert out.returncode == 0, out.stderr
    tagged = [json.loads(x) for x in out.stdout.splitlines()]
    assert len(tagged) == 10
    found = [{e["word"] for e in t} for t in tagged]
    numbers = [{w for w, tag in zip(r["tokens"], r["tags"]) if tag == "B-NUM"} for r in sentences]
    assert sum(len(f & n) for f, n in zip(found, numbers)) >= 0.6 * sum(map(len, numbers))
    assert all(e["entity_group"] == "NUM" for t in tagged for e in t)


def test_sentence_order(tiny_model: Path) -> None:
    pairs = [("Call me Ishmael.", "Some years ago I went to sea."), ("It was cold.", "The sea froze.")]
    out = cli("sentence-order", "--first", pairs[0][0], "--second", pairs[0][1], "--model", str(tiny_model),
              "--precision", "fp32")
    assert out.returncode == 0, out.stderr
    one = json.loads(out.stdout)
    pipe = albert.pipeline("sentence-order", model=tiny_model, precision="fp32")
    want = pipe({"first": pairs[0][0], "second": pairs[0][1]})
    assert one["label"] == want["label"] and one["score"] == pytest.approx(want["score"], abs=1e-5)
    stdin = "".join(json.dumps({"first": a, "second": b}) + "\n" for a, b in pairs)
    out = cli("sentence-order", "--model", str(tiny_model), "--precision", "fp32", stdin=stdin)
    assert out.returncode == 0 and len(out.stdout.splitlines()) == 2, out.stderr


def test_export_onnx_int8_gives_the_classifier_s_values(toy_models: dict[str, tuple[Path, Path]], tmp_path: Path
                                                        ) -> None:
    """`albert export onnx --quantize int8` on a fine-tuned classifier: ONNX Runtime's probabilities within 0.05 of
    PyTorch's fp32 and of albert's int8 pipeline, the same label on at least 90% of the dev rows."""
    import onnxruntime as ort
    model, dev = toy_models["classification"]
    path = tmp_path / "clf-int8.onnx"
    out = cli("export", "onnx", "--model", str(model), "--out", str(path), "--quantize", "int8")
    assert out.returncode == 0, out.stderr
    texts = [r["text"] for r in rows(dev)]
    tok = albert.AlbertTokenizer.from_pretrained(model)
    batch = tok(texts, padding=True, truncation=True, max_length=64, return_tensors="np")
    session = ort.InferenceSession(str(path))
    logits = session.run(None, {k: batch[k].astype(np.int64) for k in ("input_ids", "attention_mask",
                                                                         "token_type_ids")})[0]
    onnx_probs = np.exp(logits - logits.max(-1, keepdims=True))
    onnx_probs /= onnx_probs.sum(-1, keepdims=True)
    labels = albert.AlbertConfig.from_json_file(model / "config.json").id2label
    for precision in ("fp32", "int8"):
        ranked = albert.pipeline("text-classification", model=model, precision=precision)(texts, top_k=None)
        probs = np.array([[next(x["score"] for x in r if x["label"] == labels[i]) for i in range(len(labels))]
                          for r in ranked])
        assert np.abs(onnx_probs - probs).max() < 0.05, precision
        assert (onnx_probs.argmax(-1) == probs.argmax(-1)).mean() >= 0.9


def test_finetune_resumes_after_a_kill_exactly(tiny_model: Path, toy_models: dict[str, tuple[Path, Path]],
                                               tmp_path: Path) -> None:
    """SIGKILL between checkpoints, then `--resume`: the same losses, step for step, and the same model."""
    _, dev = toy_models["classification"]
    train = dev.parent / "train.jsonl"

    def args(out: Path) -> list[str]:
        return ["finetune", "--task", "classification", "--train", str(train), "--dev", str(dev), "--model",
                str(tiny_model), "--out", str(out), "--max_steps", "20", "--save_every", "6", "--batch_size", "8",
                "--max_seq_length", "48", "--learning_rate", "1e-3", "--precision", "fp32", "--progress", "false",
                "--num_threads", "1"]

    whole = cli(*args(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "albert", *args(killed)],
                            env={**os.environ, "ALBERT_TEST_STOP_AT_STEP": "9"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    wait_until_stopped(proc, "step 9")
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)
    assert not (killed / "model.safetensors").exists()
    resumed = cli(*args(killed), "--resume")
    assert resumed.returncode == 0, resumed.stderr

    def losses(out: Path) -> list[float]:
        metrics = out.parent / f"{out.name}-run" / "metrics.jsonl"
        return [r["loss"] for r in map(json.loads, metrics.read_text().splitlines()) if "loss" in r]

    assert len(losses(killed)) == 20 and losses(killed) == losses(tmp_path / "whole")
    assert (killed / "model.safetensors").read_bytes() == (tmp_path / "whole" / "model.safetensors").read_bytes()


def test_serve_a_chosen_task_with_cors(toy_models: dict[str, tuple[Path, Path]]) -> None:
    """`albert serve --task text-classification --cors-origin ORIGIN`: the route answers as the pipeline does, a
    browser on ORIGIN is allowed (and preflighted), another origin is not."""
    model, dev = toy_models["classification"]
    origin = "http://localhost:5173"
    proc = subprocess.Popen([sys.executable, "-m", "albert", "serve", "--model", str(model), "--task",
                             "text-classification", "--port", "0", "--precision", "fp32", "--cors-origin", origin],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        found = re.search(r"(http://127\.0\.0\.1:\d+)/", proc.stdout.readline())
        assert found, proc.stderr.read() if proc.stderr else ""
        url = found.group(1)
        deadline = time.time() + 300
        while True:  # the line is printed before the model is ready: /health says when
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=10) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.2)
        text = rows(dev)[0]["text"]
        request = urllib.request.Request(f"{url}/classify", data=json.dumps({"inputs": text}).encode(),
                                         headers={"Content-Type": "application/json", "Origin": origin})
        with urllib.request.urlopen(request, timeout=60) as r:
            answer = json.loads(r.read())
            assert r.headers["Access-Control-Allow-Origin"] == origin
        want = albert.pipeline("text-classification", model=model, precision="fp32")(text)
        got = answer[0] if isinstance(answer, list) else answer
        got = got[0] if isinstance(got, list) else got
        assert got["label"] == want["label"] and got["score"] == pytest.approx(want["score"], abs=1e-4)
        preflight = urllib.request.Request(f"{url}/classify", method="OPTIONS", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST"})
        with urllib.request.urlopen(preflight, timeout=60) as r:
            assert r.headers["Access-Control-Allow-Origin"] == origin
        other = urllib.request.Request(f"{url}/classify", data=json.dumps({"inputs": text}).encode(),
                                       headers={"Content-Type": "application/json", "Origin": "http://evil.test"})
        with urllib.request.urlopen(other, timeout=60) as r:
            assert "Access-Control-Allow-Origin" not in r.headers
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def test_version() -> None:
    out = cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"albert {albert.__version__}", out


def test_choose_answers_the_multiple_choice_task(toy_models: dict[str, tuple[Path, Path]], albert_cli: Any) -> None:
    """`albert choose` on the fine-tuned multiple-choice model: the right option on most dev questions (chance 0.25),
    the label the pipeline gives."""
    model, dev = toy_models["multiple-choice"]
    questions = rows(dev)[:20]
    stdin = "".join(json.dumps({k: r[k] for k in ("article", "question", "options")}) + "\n" for r in questions)
    out = albert_cli("choose", "--model", str(model), "--precision", "fp32", stdin=stdin)
    assert out.returncode == 0, out.stderr
    answers = [json.loads(x) for x in out.stdout.splitlines()]
    assert sum(a["label"] == r["label"] for a, r in zip(answers, questions)) >= 14, answers
    want = albert.pipeline("multiple-choice", model=model, precision="fp32")(
        [{k: r[k] for k in ("article", "question", "options")} for r in questions])
    assert [a["label"] for a in answers] == [w["label"] for w in want]
