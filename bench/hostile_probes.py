"""Hostile and careless inputs against every surface, each a fresh process (or a request to one server): the
verdict per probe and the count per class of failure.

    python bench/hostile_probes.py [--only SUBSTRING] [--out bench/results/hostile_probes.json]

A probe passes when the command exits 0 or 2, its stderr holds no traceback, a refusal is one `albert: error:`
line, what it must refuse it refuses (exit 2, never a silent 0), it ends within its time limit, its peak RSS stays
under its bound, and a file the user left is still there, unchanged. A server probe passes when the answer is a
4xx with a JSON `error` (or the 2xx it names) and the server still answers a normal request afterwards. These are
variants of the classes in issue #51 — not the suite's examples — so a fix that covered only an example shows.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TEXT = ROOT / "tests" / "fixtures" / "public_domain.txt"
ALBERT = [sys.executable, "-m", "albert"]


@dataclass
class Probe:
    name: str
    argv: list[str]
    refuse: bool = True  # exit 2 expected; False: 0 or 2 both fine
    says: str = ""  # the refusal must contain this (case-insensitive), when given
    keep: list[Path] = field(default_factory=list)  # the user's files that must survive unchanged
    stdin: str | None = None
    timeout: float = 120.0
    max_rss_mb: int = 1500


def peak_rss_mb(err: str) -> int:
    found = re.findall(r"^PEAK_KB (\d+)$", err, re.M)
    return int(found[-1]) // 1024 if found else 0


def run_probe(p: Probe) -> dict[str, Any]:
    before = {str(k): k.read_bytes() for k in p.keep}
    started = time.perf_counter()
    try:
        done = subprocess.run(["/usr/bin/time", "-f", "PEAK_KB %M", *ALBERT, *p.argv], input=p.stdin,
                              capture_output=True, text=True, timeout=p.timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"verdict": "hang", "seconds": p.timeout}
    seconds = round(time.perf_counter() - started, 1)
    err = done.stderr
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("PEAK_KB")
             and "Command exited with non-zero status" not in line]
    rss = peak_rss_mb(err)
    out = {"rc": done.returncode, "seconds": seconds, "peak_rss_mb": rss, "stderr": lines[-3:]}
    lost = [k for k, data in before.items() if not Path(k).is_file() or Path(k).read_bytes() != data]
    if lost:
        verdict = "data loss"
    elif "Traceback" in err:
        verdict = "traceback"
    elif done.returncode not in (0, 2):
        verdict = f"exit {done.returncode}"
    elif rss > p.max_rss_mb:
        verdict = "unbounded memory"
    elif p.refuse and done.returncode == 0:
        verdict = "silently accepted"
    elif done.returncode == 2 and sum(line.startswith("albert: error:") for line in lines) != 1:
        verdict = "not one line"
    elif done.returncode == 2 and p.says and p.says.lower() not in err.lower():
        verdict = "unclear message"
    else:
        verdict = "pass"
    return {"verdict": verdict, **out}


# ----------------------------------------------------------------------------------------------- fixtures


def build_fixtures(work: Path) -> dict[str, Path]:
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer, models

    from albert.data.shards import prepare_data
    from albert.tokenization.vocabulary import train_tokenizer
    from albert.train.pretrain import pretrain
    from albert.train.settings import PretrainSettings

    fx: dict[str, Path] = {}
    tok = train_tokenizer([TEXT], work / "tok", vocab_size=1000, progress=False)
    fx["tok"] = work / "tok"
    prepare_data([TEXT], fx["tok"], work / "prepared", eval_fraction=0.1, workers=1, docs_per_shard=40,
                 progress=False)
    fx["data"] = work / "prepared"
    pretrain(PretrainSettings(data=str(work / "prepared"), run_dir=str(work / "tiny"), model="albert-tiny",
                              max_seq_length=64, batch_size=8, max_steps=4, precision="fp32", eval_every=0,
                              save_every=0, progress=False, num_threads=1))
    fx["model"] = work / "tiny" / "final"
    del tok
    bert = work / "bert"
    bert.mkdir()
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(TEXT.read_text().lower().split()))[:400]]
    (bert / "vocab.txt").write_text("\n".join(words) + "\n")
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    transformers.BertModel(config).save_pretrained(bert)
    transformers.BertTokenizer(str(bert / "vocab.txt")).save_pretrained(bert)
    fx["bert"] = bert
    st = models.Transformer(str(bert), max_seq_length=64)
    teacher = SentenceTransformer(modules=[st, models.Pooling(st.get_word_embedding_dimension(), "mean")])
    teacher.save(str(work / "st-teacher"))
    fx["st"] = work / "st-teacher"
    lines = [line for line in TEXT.read_text().splitlines() if len(line.split()) > 8]
    (work / "texts.txt").write_text("\n\n".join(lines[:200]) + "\n")
    fx["texts"] = work / "texts.txt"
    rows = [{"text": line, "label": ["a", "b"][i % 2]} for i, line in enumerate(lines[:40])]
    (work / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    fx["train"] = work / "train.jsonl"
    return fx


def variant(src: Path, dest: Path, change: Callable[[Path], object]) -> Path:
    shutil.copytree(src, dest)
    change(dest)
    return dest


def json_edit(name: str, **fields: Any) -> Callable[[Path], object]:
    def change(d: Path) -> None:
        data = json.loads((d / name).read_text())
        (d / name).write_text(json.dumps(data | fields))
    return change


def raw(name: str, data: bytes | str) -> Callable[[Path], object]:
    return lambda d: (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def vocab_only(data: bytes | str) -> Callable[[Path], object]:
    """The vocabulary read from vocab.txt alone: tokenizer.json, which comes first, removed."""
    def change(d: Path) -> None:
        (d / "tokenizer.json").unlink(missing_ok=True)
        raw("vocab.txt", data)(d)
    return change


def weights_edit(edit: Callable[[dict[str, Any]], object]) -> Callable[[Path], object]:
    def change(d: Path) -> None:
        from safetensors.torch import load_file, save_file
        state = load_file(str(d / "model.safetensors"))
        edit(state)
        save_file(state, str(d / "model.safetensors"))
    return change


def user_dir_with_marker(path: Path, marker_json: str) -> tuple[Path, Path]:
    path.mkdir()
    (path / "notes.txt").write_text("the user's notes\n")
    (path / ".albert-incomplete").mkdir()
    (path / ".albert-incomplete" / ".command").write_text(marker_json)
    return path, path / "notes.txt"


# --------------------------------------------------------------------------------------------- the probes


def cli_probes(fx: dict[str, Path], w: Path) -> list[Probe]:
    import torch

    m, bert, st, texts, train = (str(fx[k]) for k in ("model", "bert", "st", "texts", "train"))
    probes: list[Probe] = []
    # convert --from-bert: the BERT directory read strictly (variants of the suite's cases)
    bert_cases: list[tuple[str, Callable[[Path], object], str]] = [
        ("negative heads", json_edit("config.json", num_attention_heads=-2), "num_attention_heads"),
        ("bool size", json_edit("config.json", intermediate_size=True), "intermediate_size"),
        ("infinite size", raw("config.json", '{"hidden_size": 1e999, "num_hidden_layers": 2}'), "hidden_size"),
        ("config is a directory", lambda d: ((d / "config.json").unlink(), (d / "config.json").mkdir()), "config.json"),
        ("empty vocab.txt (no tokenizer.json)", vocab_only(""), "vocab"),
        ("vocab.txt not utf-8 (no tokenizer.json)", vocab_only(b"\xff\xfe\x00bad\n" * 50), "vocab"),
        ("vocab.txt shorter than the embeddings (no tokenizer.json)", vocab_only("[PAD]\n[UNK]\n"), ""),
        ("inf in a layer weight", weights_edit(lambda s: s["encoder.layer.1.output.dense.weight"].__setitem__(
            (0, 0), float("inf"))), "NaN or infinite"),
        ("int16 weight", weights_edit(lambda s: s.update(
            {"encoder.layer.0.output.dense.bias": torch.zeros(32, dtype=torch.int16)})), "int16"),
        ("truncated weights", lambda d: (d / "model.safetensors").write_bytes(
            (d / "model.safetensors").read_bytes()[:5000]), "weights"),
        ("weights header claims 2^60 bytes", raw("model.safetensors", struct.pack("<Q", 1 << 60) + b"{}"), "weights"),
        ("weights header not JSON", raw("model.safetensors", struct.pack("<Q", 8) + b"notjson!"), "weights"),
        ("config nested 50,000 deep", raw("config.json", '{"a":' * 50000 + "1" + "}" * 50000), "nested"),
        ("config.json a symlink to /dev/urandom",
         lambda d: ((d / "config.json").unlink(), (d / "config.json").symlink_to("/dev/urandom")), "device"),
    ]
    for n, (name, change, says) in enumerate(bert_cases):
        src = variant(fx["bert"], w / f"bert{n}", change)
        probes.append(Probe(f"convert --from-bert: {name}", ["convert", "--from-bert", str(src), "--out",
                                                            str(w / f"bert-out{n}")], says=says))
    for n, (flags, says) in enumerate([(["--layers", "-1"], "--layers"), (["--layers", "1e3"], "--layers"),
                                       (["--layers", "0;1"], "--layers"), (["--passes", "0"], "passes"),
                                       (["--passes", "-3"], "passes"), (["--embedding-size", "0"], "embedding"),
                                       (["--embedding-size", "100000"], "embedding"),
                                       (["--passes", "nan"], "passes")]):
        probes.append(Probe(f"convert --from-bert {' '.join(flags)}", ["convert", "--from-bert", bert, *flags,
                                                                     "--out", str(w / f"flags-out{n}")], says=says))
    target = w / "a-file.txt"
    target.write_text("mine\n")
    probes.append(Probe("convert --out an existing file", ["convert", "--from-bert", bert, "--out", str(target)],
                        keep=[target]))
    for n, (command, marker) in enumerate([
            (["convert", "--from-bert", bert], '{"command": "convert"}'),
            (["distill", "--teacher", st, "--student", m, "--data", texts, "--vectors.eval_texts", "20",
              "--max_steps", "1"],
             '{"command": "distill"}'),
            (["export", "sentence-transformers", "--model", m], '{"command": "export"}'),
            (["tokenizer", "train", "--input", str(TEXT), "--vocab-size", "300"], '{"command": "tokenizer train"}'),
            (["data", "prepare", "--input", str(TEXT), "--tokenizer", str(fx["tok"])], '{"command": "data prepare"}'),
            (["finetune", "--task", "classification", "--train", train, "--model", m, "--max_steps", "1"],
             '{"command": "finetune"}'),
            (["convert", "--from-bert", bert], '{"command": "convert", "written": ["../a-file.txt", "notes.txt"]}'),
            (["convert", "--from-bert", bert], "not json at all")]):
        out, notes = user_dir_with_marker(w / f"stale{n}", marker)
        probes.append(Probe(f"{command[0]} --out: a stale marker beside a user's file ({marker[:30]})",
                            [*command, "--out", str(out)], keep=[notes, target]))
    # distill: teachers, students, settings, data
    bad_st = [
        ("modules.json names a module outside the teacher", json_edit_list("modules.json", [
            {"idx": 0, "name": "0", "path": "../../etc", "type": "sentence_transformers.models.Transformer"}])),
        ("modules.json names builtins.eval", json_edit_list(
            "modules.json", [{"idx": 0, "name": "0", "path": "", "type": "builtins.eval"}])),
        ("modules.json is an object", raw("modules.json", '{"0": "x"}')),
        ("modules.json nested 50,000 deep", raw("modules.json", "[" * 50000 + "]" * 50000)),
        ("pooling config says a mode that does not exist", lambda d: (d / "1_Pooling" / "config.json").write_text(
            json.dumps({"word_embedding_dimension": 32, "pooling_mode_median_tokens": True}))),
        ("the teacher's weights truncated", lambda d: (d / "model.safetensors").write_bytes(b"\x10\x00" * 10)),
    ]
    for n, (name, change) in enumerate(bad_st):
        src = variant(fx["st"], w / f"st{n}", change)
        probes.append(Probe(f"distill: teacher {name}", ["distill", "--teacher", str(src), "--student", m, "--data",
                                                         texts, "--vectors.eval_texts", "20", "--max_steps", "2",
                                                         "--out", str(w / f"st-out{n}")]))
    base = ["distill", "--teacher", st, "--student", m, "--data", texts, "--vectors.eval_texts", "20"]
    for n, (flags, says) in enumerate([
            (["--student_overrides", '{"hidden_size": "big"}'], "hidden_size"),
            (["--student_overrides", "{not json"], "student_overrides"),
            (["--student_overrides", '{"num_hidden_layers": 0}'], "num_hidden_layers"),
            (["--student_overrides", '{"num_hidden_layers": 1e400}'], "num_hidden_layers"),
            (["--max_seq_length", "0"], "max_seq_length"), (["--max_seq_length", "4e9"], "max_seq_length"),
            (["--vectors.temperature", "0"], "temperature"), (["--vectors.temperature", "nan"], "temperature"),
            (["--soft.kd_weight", "1.5"], "kd_weight"), (["--vectors.short_share", "-0.1"], "short_share"),
            (["--vectors.max_texts", "1.5"], "max_texts"), (["--learning_rate", "inf"], "learning_rate"),
            (["--kind", "masked-lm"], ""), (["--kind", "task"], ""), (["--student", str(fx["tok"])], ""),
            (["--data", str(w)], ""), (["--data", "/dev/zero"], ""), (["--vectors.cache_dir", str(target)], "")]):
        probes.append(Probe(f"distill {' '.join(flags)[:60]}", [*base, *flags, "--max_steps", "2", "--out",
                                                                 str(w / f"d-out{n}")], says=says, keep=[target]))
    # settings files
    yaml_cases = [
        ("a billion laughs", "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                             "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                             "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
                             "g: [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n"),
        ("max_steps: .inf", "max_steps: .inf\n"), ("max_steps: 2.5", "max_steps: 2.5\n"),
        ("a top-level list", "- max_steps\n- 3\n"), ("an unknown key", "max_stepz: 3\n"),
        ("a python object tag", "max_steps: !!python/object/apply:os.system ['true']\n"),
        ("binary bytes", "\x00\x01\x02max_steps: 3\n"), ("learning_rate: -1", "learning_rate: -1\n"),
        ("seed: 2**70", f"seed: {2 ** 70}\n"), ("batch_size: true", "batch_size: true\n"),
    ]
    for n, (name, text) in enumerate(yaml_cases):
        cfg = w / f"cfg{n}.yaml"
        cfg.write_text(text)
        probes.append(Probe(f"pretrain --config {name}", ["pretrain", "--config", str(cfg), "--data", str(fx["data"]),
                                                          "--run_dir", str(w / f"pre{n}"), "--max_steps", "1"]
                            if "max_steps" not in text else
                            ["pretrain", "--config", str(cfg), "--data", str(fx["data"]), "--run_dir",
                             str(w / f"pre{n}")], max_rss_mb=1500, timeout=60))
    ft = ["finetune", "--task", "classification", "--train", train, "--model", m]
    for n, (flags, says) in enumerate([
            (["--epochs", "1e12"], "epochs"), (["--learning_rate", "-1"], "learning_rate"),
            (["--max_seq_length", "-64"], "max_seq_length"), (["--batch_size", "sixteen"], "batch_size"),
            (["--warmup_fraction", "2"], "warmup_fraction"), (["--patience", "3"], "")]):
        probes.append(Probe(f"finetune {' '.join(flags)}", [*ft, *flags, "--out", str(w / f"ft{n}")], says=says))
    for n, (name, rows) in enumerate([("a null label", [{"text": "a", "label": None}]),
                                      ("a label that is a list", [{"text": "a", "label": ["x"]}]),
                                      ("text a number", [{"text": 5, "label": "x"}]),
                                      ("no rows", [])]):
        f = w / f"rows{n}.jsonl"
        f.write_text("".join(json.dumps(r) + "\n" for r in rows))
        probes.append(Probe(f"finetune --train with {name}", ["finetune", "--task", "classification", "--train",
                                                              str(f), "--model", m, "--out", str(w / f"ftr{n}")]))
    # inference commands
    out = w / "vectors.jsonl"
    out.write_text('{"old": 1}\n')
    probes.append(Probe("embed --out an existing file without --resume", ["embed", "--model", m, "--out", str(out),
                                                                          "a text"], keep=[out]))
    longer = w / "longer.jsonl"
    longer.write_text("".join(json.dumps([0.0]) + "\n" for _ in range(5)))
    two = w / "two.txt"
    two.write_text("one\ntwo\n")
    probes.append(Probe("embed --resume where the output has more lines than the input",
                        ["embed", "--model", m, "--file", str(two), "--out", str(longer), "--resume"], keep=[longer]))
    nul = w / "nul.txt"
    nul.write_text("a\x00b\nplain\n")
    probes += [
        Probe("embed --file with a NUL byte inside a line", ["embed", "--model", m, "--file", str(nul)], refuse=False),
        Probe("fill-mask 3,000 masks at top-k 50", ["fill-mask", "--model", m, "--top-k", "50"],
              stdin="[MASK] " * 3000 + "\n", says="fillers"),
        Probe("fill-mask --top-k 0", ["fill-mask", "--model", m, "--top-k", "0", "a [MASK]"], says="top"),
        Probe("fill-mask --top-k 1e3", ["fill-mask", "--model", m, "--top-k", "1e3", "a [MASK]"]),
        Probe("embed --device cuda on a machine without one", ["embed", "--model", m, "--device", "cuda", "x"]),
        Probe("embed --device tpu:7", ["embed", "--model", m, "--device", "tpu:7", "x"]),
        Probe("classify --patience -1", ["classify", "--model", m, "--patience", "-1", "x"]),
        Probe("classify --exit-threshold nan", ["classify", "--model", m, "--exit-threshold", "nan", "x"]),
        Probe("tag a 4.1 M-character text", ["tag", "--model", m], stdin="word " * 820_000 + "\n", timeout=60,
              says="characters"),
        Probe("answer with an empty question", ["answer", "--model", m, "--file", str(jsonl(w / "qa.jsonl", [
            {"question": "", "context": "The whale swam."}]))], refuse=False),
        Probe("choose with no options", ["choose", "--model", m, "--file", str(jsonl(w / "mc.jsonl", [
            {"question": "q", "options": []}]))]),
        Probe("tokenize a 120,000-character argument", ["tokenize", "--tokenizer", m, "x" * 120_000], refuse=False,
              timeout=60),
        Probe("export onnx --out a directory", ["export", "onnx", "--model", m, "--out", str(w)]),
        Probe("serve --port 70000", ["serve", "--model", m, "--port", "70000"]),
        Probe("serve --max-batch 0", ["serve", "--model", m, "--max-batch", "0"]),
        Probe("serve --workers -1", ["serve", "--model", m, "--workers", "-1"]),
        Probe("serve --grace -inf", ["serve", "--model", m, "--grace=-inf"]),
    ]
    return probes


def json_edit_list(name: str, value: Any) -> Callable[[Path], object]:
    return lambda d: (d / name).write_text(json.dumps(value))


def jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ------------------------------------------------------------------------------------------------ server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def server_probes(model: Path) -> list[dict[str, Any]]:
    port = free_port()
    proc = subprocess.Popen([*ALBERT, "serve", "--model", str(model), "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(120):
            try:
                if request(port, "GET", "/health")[0] == 200:
                    break
            except OSError:
                time.sleep(0.5)
        deep = '{"inputs": ' + "[" * 100_000 + "]" * 100_000 + "}"
        cases: list[tuple[str, str, str, bytes, dict[str, str]]] = [
            ("top_k a string", "POST", "/fill-mask", b'{"inputs": "a [MASK]", "parameters": {"top_k": "5"}}', {}),
            ("top_k a float", "POST", "/fill-mask", b'{"inputs": "a [MASK]", "parameters": {"top_k": 2.5}}', {}),
            ("top_k 10**30", "POST", "/fill-mask", b'{"inputs": "a [MASK]", "parameters": {"top_k": 1'
                                                   + b"0" * 30 + b"}}", {}),
            ("an unknown parameter", "POST", "/fill-mask", b'{"inputs": "a [MASK]", "parameters": {"truncation": 1}}',
             {}),
            ("inputs an object with a stray field", "POST", "/fill-mask", b'{"inputs": {"text": "a [MASK]", "x": 1}}',
             {}),
            ("inputs nested 100,000 deep", "POST", "/fill-mask", deep.encode(), {}),
            ("a million empty strings", "POST", "/fill-mask", json.dumps({"inputs": [""] * 1_000_000}).encode(), {}),
            ("no [MASK]", "POST", "/fill-mask", b'{"inputs": "no mask here"}', {}),
            ("[MASK] x 5,000 at top_k 10", "POST", "/fill-mask",
             json.dumps({"inputs": "[MASK] " * 5000, "parameters": {"top_k": 10}}).encode(), {}),
            ("inputs null", "POST", "/fill-mask", b'{"inputs": null}', {}),
            ("body a JSON string", "POST", "/fill-mask", b'"a [MASK]"', {}),
            ("invalid UTF-8", "POST", "/fill-mask", b'{"inputs": "\xff\xfe [MASK]"}', {}),
            ("a lone surrogate escape", "POST", "/fill-mask", b'{"inputs": "\\udc00 [MASK]"}', {}),
            ("NaN in parameters", "POST", "/fill-mask", b'{"inputs": "a [MASK]", "parameters": {"top_k": NaN}}', {}),
            ("Content-Length -1", "POST", "/fill-mask", b"{}", {"Content-Length": "-1"}),
            ("a 70,000-byte header", "GET", "/health", b"", {"X-Big": "a" * 70_000}),
            ("Content-Type text/plain with JSON", "POST", "/fill-mask", b'{"inputs": "a [MASK]"}',
             {"Content-Type": "text/plain"}),
            ("a route that does not exist", "POST", "/embed/../../etc/passwd", b"{}", {}),
            ("DELETE /", "DELETE", "/", b"", {}),
        ]
        results = []
        for name, method, path, body, headers in cases:
            try:
                status, data = request(port, method, path, body, headers)
                try:
                    error = isinstance(json.loads(data), dict) and "error" in json.loads(data)
                except ValueError:
                    error = False
                # lenient and still right: a JSON body is read whatever its Content-Type says; fields an input does not
                # use are left alone (rows carry ids beside their texts)
                ok_2xx = name in ("Content-Type text/plain with JSON", "inputs an object with a stray field")
                verdict = "pass" if (400 <= status < 500 and error) or (ok_2xx and status == 200) else \
                    f"status {status}" + ("" if error else ", no JSON error")
            except (OSError, http.client.HTTPException) as e:
                status, verdict = 0, f"connection failed: {e.__class__.__name__}"
            alive = request(port, "POST", "/fill-mask", b'{"inputs": "The [MASK] sea."}')[0] == 200
            results.append({"probe": f"serve: {name}", "verdict": verdict if alive else "server stopped answering",
                            "status": status})
        return results
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="*", default=[], help="probes whose name holds one of these")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "hostile_probes.json"))
    args = p.parse_args()
    from albert.runtime.kernels import cpu_description

    with tempfile.TemporaryDirectory() as tmp:
        w = Path(tmp)
        fx = build_fixtures(w / "fx")
        results = []
        for probe in cli_probes(fx, w):
            if not args.only or any(o in probe.name for o in args.only):
                r = {"probe": probe.name, **run_probe(probe)}
                print(f"{r['verdict']:>18}  {probe.name}  {r.get('stderr', [''])[-1:]}", flush=True)
                results.append(r)
        if not args.only or "serve:" in args.only:
            for r in server_probes(fx["model"]):
                print(f"{r['verdict']:>18}  {r['probe']}", flush=True)
                results.append(r)
    counts = Counter(r["verdict"] for r in results)
    report = {"cpu": cpu_description(), "probes": len(results), "verdicts": dict(counts), "results": results}
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(report["verdicts"]))


if __name__ == "__main__":
    main()
