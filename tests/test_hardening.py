"""Bad input of every kind gets one line `albert: error: ...` and exit 2 — never a traceback, a user's file
replaced, or NaN printed. The malformed task files are tests/fixtures/malformed (made by make_malformed.py)."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from albert.cli import main
from albert.errors import AlbertError, CheckpointError, DataError, TrainingError

BAD = Path(__file__).parent / "fixtures" / "malformed"


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """In-process `albert ARGS`: (exit code, stderr). An uncaught exception fails the test (a traceback)."""
    capsys.readouterr()
    code = main(args)
    return code, capsys.readouterr().err


def one_line_error(code: int, err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("albert: error: ")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ----- task files -----
TASK_OF_FIXTURE = {".squad.json": "qa-v2", ".race.json": "multiple-choice", ".qa.jsonl": "qa",
                   ".cls.jsonl": "classification", ".cls.jsonl.gz": "classification",
                   ".cls.jsonl.xz": "classification", ".tok.jsonl": "token-classification"}
EXPECTED = {  # fixture → what the one line says (besides naming the file)
    "squad_no_context": "no 'context'", "squad_no_id": "'id' must be", "squad_no_question": "no 'question'",
    "squad_answers_object": "answers must be a list", "squad_data_object": "data must be a list",
    "squad_paragraphs_string": "paragraphs must be a list", "squad_empty_answer": "non-empty string",
    "squad_start_string": "answer_start must be an integer", "race_no_options": "no 'options'",
    "race_fewer_options": "2 questions but 1 option lists", "race_list_top": "got a list",
    "qa_answers_scalars": "answers.text must be a list", "qa_empty_answer": "non-empty string",
    "qa_start_float": "answer_start must be an integer", "label_list": "must be a label name or index",
    "label_dict": "must be a label name or index", "label_float": "must be a label name or index",
    "label_nan": "NaN is not a JSON number", "label_huge_int": "more than 4,300 digits",
    "deep_nesting": "nested too deep", "latin1": "not UTF-8 text (byte 0xe9", "truncated": "cannot read",
    "corrupt": "cannot read", "tags_out_of_range": "tag id 7",
}


def _fixtures() -> list[Path]:
    return sorted(p for p in BAD.iterdir() if p.is_file() and p.suffix != ".py" and not p.name.startswith("bom"))


@pytest.mark.parametrize("path", _fixtures(), ids=lambda p: p.name)
def test_malformed_task_file_is_one_line_naming_file_and_place(path: Path, tiny_model: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    task = next(t for suffix, t in TASK_OF_FIXTURE.items() if path.name.endswith(suffix))
    if task == "token-classification":  # tag ids need names: a meta.json beside the file
        shutil.copy(path, tmp_path / path.name)
        (tmp_path / "meta.json").write_text(json.dumps({"labels": ["O", "B-ANIMAL"]}))
        path = tmp_path / path.name
    code, err = run_cli(["finetune", "--task", task, "--train", str(path), "--model", str(tiny_model),
                         "--out", str(tmp_path / "out"), "--max_steps", "1", "--progress", "false"], capsys)
    line = one_line_error(code, err)
    assert str(path) in line and EXPECTED[path.name.split(".")[0]] in line, line
    assert not (tmp_path / "out").exists()


def test_a_glue_row_with_a_stray_tab_is_an_error_not_a_class(tiny_model: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["finetune", "--task", "classification", "--train", str(BAD / "sst-2" / "train.tsv"),
                         "--model", str(tiny_model), "--out", str(tmp_path / "out")], capsys)
    assert "train.tsv:3: 3 columns, but the header has 2" in one_line_error(code, err)


def test_a_utf8_bom_is_accepted() -> None:
    from albert.tasks.sequence import read_examples

    rows, fields = read_examples(BAD / "bom.cls.jsonl", "classification", ["neg", "pos"])
    assert [r.text for r in rows] == ["a fine day", "a bad day"] and fields == ("text", None)


def test_json_readers_refuse_what_python_would_crash_on() -> None:
    from albert.io.files import parse_json

    for text, says in (("[" * 100_000 + "]" * 100_000, "nested too deep"), ("1" * 5000, "4,300 digits"),
                       ('{"a": Infinity}', "Infinity is not"), ('{"a": 1', "invalid JSON")):
        with pytest.raises(DataError, match=says):
            parse_json(text, "here")


# ----- arguments and settings -----
def test_bad_arguments_are_one_line(tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d"
    data.mkdir()
    cases = [
        (["pretrain", "--data", str(data), "--masked_lm_prob", "1.5"], "masked_lm_prob must be in (0, 1)"),
        (["pretrain", "--data", str(data), "--masked_lm_prob", "0"], "masked_lm_prob must be in (0, 1)"),
        (["pretrain", "--data", str(data), "--max_steps", "-3"], "max_steps must be >= 0"),
        (["pretrain", "--data", str(data), "--eval_examples", "-1"], "eval_examples must be >= 0"),
        (["pretrain", "--data", str(data), "--learning_rate", ".nan"], "learning_rate must be a finite number"),
        (["finetune", "--task", "qa", "--train", str(BAD / "qa_empty_answer.qa.jsonl"), "--model", str(tiny_model),
          "--out", str(tmp_path / "o"), "--max_seq_length", "100000"], "exceeds the model's"),
        (["finetune", "--task", "classification", "--train", str(BAD / "bom.cls.jsonl"), "--model", str(tiny_model),
          "--out", str(tmp_path / "o"), "--keep_checkpoints", "-2"], "keep_checkpoints must be >= 0"),
        (["fill-mask", "--model", str(tiny_model), "--file", str(tmp_path)], "is a directory"),
        (["embed", "--model", str(tiny_model), "--file", str(tmp_path / "in.docx")], "no such file"),
        (["fill-mask", "--model", str(tiny_model), "--top-k", "1000000", "a [MASK]"], "at most 1000"),
    ]
    (tmp_path / "in.docx").unlink(missing_ok=True)
    for args, says in cases:
        code, err = run_cli(args, capsys)
        assert says in one_line_error(code, err), (args, err)


def test_text_that_is_not_utf8_on_the_command_line(tiny_model: Path) -> None:
    """Bytes that are not UTF-8 in an argument reach Python as lone surrogates: refused, exit 2."""
    out = subprocess.run([os.fsencode(sys.executable), b"-m", b"albert", b"embed", b"--model", os.fsencode(tiny_model),
                          b"caf\xe9 [MASK]"], capture_output=True, timeout=120)
    err = out.stderr.decode(errors="replace")
    assert out.returncode == 2 and "argument 1 is not valid UTF-8 text" in err and "Traceback" not in err, err


def test_fill_mask_on_a_terminal_prints_usage_instead_of_waiting(tiny_model: Path) -> None:
    """With no text and a terminal on stdin it says how to call it (run under a pseudo-terminal)."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # the child: stdin, stdout and stderr are the terminal
        os.execv(sys.executable, [sys.executable, "-m", "albert", "fill-mask", "--model", str(tiny_model)])
    output = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    text = output.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 2 and "usage: albert fill-mask" in text and "no input" in text, text


def test_export_opset_and_missing_extra(tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["export", "onnx", "--model", str(tiny_model), "--out", str(tmp_path / "m.onnx"),
                         "--opset", "9"], capsys)
    assert "--opset 9 cannot be honoured" in one_line_error(code, err) and not (tmp_path / "m.onnx").exists()
    assert not list(tmp_path.iterdir())  # no temporary file left behind
    # without the onnx extra (a Python whose onnx cannot be imported)
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "onnxscript.py").write_text("raise ImportError('not installed')\n")
    env = os.environ | {"PYTHONPATH": f"{blocker}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    (blocker / "sitecustomize.py").write_text(
        "import importlib.util, sys\n_real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda n, *a: None if n in ('onnx', 'onnxscript') else _real(n, *a)\n")
    out = subprocess.run([sys.executable, "-m", "albert", "export", "onnx", "--model", str(tiny_model), "--out",
                          str(tmp_path / "x.onnx")], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2 and "pip install 'albert-lm[onnx]'" in out.stderr and "Traceback" not in out.stderr


# ----- model directories -----
def test_configs_that_cannot_be_allocated_are_refused_first(tiny_model: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    config = json.loads((tiny_model / "config.json").read_text())
    for change, says in (({"vocab_size": 10**12}, "GiB available"), ({"num_hidden_layers": 10**6}, "passes")):
        bad = tmp_path / f"m{len(says)}"
        shutil.copytree(tiny_model, bad)
        (bad / "config.json").write_text(json.dumps(config | change))
        code, err = run_cli(["embed", "--model", str(bad), "hello"], capsys)
        assert says in one_line_error(code, err)


def test_non_finite_outputs_are_an_error_never_nan(tiny_model: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors.torch import load_file, save_file

    bad = tmp_path / "nan"
    shutil.copytree(tiny_model, bad)
    state = load_file(str(bad / "model.safetensors"))
    key = next(k for k in state if k.endswith("LayerNorm.weight"))
    state[key] = torch.full_like(state[key], 3e38)  # finite weights (NaN ones are refused on reading) that overflow
    save_file(state, str(bad / "model.safetensors"))
    (bad / "model.onnx").unlink(missing_ok=True)
    for args in (["fill-mask", "--model", str(bad), "--json", "the [MASK] sea"], ["embed", "--model", str(bad), "x"],
                 ["embed", "--model", str(bad), "--precision", "int8", "x"]):
        code, err = run_cli(args, capsys)
        assert "non-finite values" in one_line_error(code, err)


def test_fill_mask_never_proposes_special_tokens(tiny_model: Path) -> None:
    import albert

    fm = albert.pipeline("fill-mask", model=tiny_model, precision="fp32")
    special = set(fm.tokenizer.all_special_ids)
    two, one = fm(["[MASK] [MASK]", "the [MASK] of [CLS]"], top_k=50)
    for answers in [*two, one]:
        assert len(answers) == 50 and not special & {a["token"] for a in answers}


# ----- outputs never replace a user's file -----
def test_no_command_writes_into_a_users_directory(tiny_model: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    corpus = Path(__file__).parent / "fixtures" / "public_domain.txt"
    users = tmp_path / "users"
    users.mkdir()
    (users / "tokenizer_config.json").write_text("mine")
    (users / "train").mkdir()
    (users / "train" / "00000.tokens").write_text("mine too")
    commands = [
        ["tokenizer", "train", "--input", str(corpus), "--vocab-size", "200", "--out", str(users), "--quiet"],
        ["data", "prepare", "--input", str(corpus), "--tokenizer", str(tiny_model), "--out", str(users), "--quiet"],
        ["finetune", "--task", "classification", "--train", str(BAD / "bom.cls.jsonl"), "--model", str(tiny_model),
         "--out", str(users)],
        ["export", "onnx", "--model", str(tiny_model), "--out", str(users / "tokenizer_config.json")],
    ]
    for args in commands:
        code, err = run_cli(args, capsys)
        assert "users" in one_line_error(code, err)
        assert (users / "tokenizer_config.json").read_text() == "mine"
        assert (users / "train" / "00000.tokens").read_text() == "mine too"
        assert sorted(p.name for p in users.iterdir()) == ["tokenizer_config.json", "train"]


def test_an_interrupted_commands_own_leftovers_are_cleared(tmp_path: Path) -> None:
    """A killed `tokenizer train` leaves its staging directory; the rerun clears it (and only it) and writes anew."""
    from albert.io.output_dirs import MARKER, claim_output
    from albert.tokenization.vocabulary import train_tokenizer

    out = tmp_path / "tok"
    with pytest.raises(KeyboardInterrupt), claim_output(out, "tokenizer train") as staging:
        (staging / "spiece.model").write_text("half-written")
        raise KeyboardInterrupt
    assert not out.exists()  # an interruption it saw: what it made is gone
    out.mkdir()
    (out / MARKER).mkdir()  # as a SIGKILL leaves it
    (out / MARKER / ".command").write_text(json.dumps({"command": "tokenizer train"}))
    (out / MARKER / "spiece.model").write_text("half-written")
    corpus = Path(__file__).parent / "fixtures" / "public_domain.txt"
    tok = train_tokenizer([corpus], out, vocab_size=200, progress=False)
    assert tok.vocab_size == 200 and not (out / MARKER).exists() and (out / "spiece.model").stat().st_size > 1000
    # another command's leftovers are not this one's to clear
    other = tmp_path / "other"
    (other / MARKER).mkdir(parents=True)
    (other / MARKER / ".command").write_text(json.dumps({"command": "data prepare"}))
    with pytest.raises(AlbertError, match="interrupted `albert data prepare`"):
        train_tokenizer([corpus], other, vocab_size=200, progress=False)


# every command that writes a directory, and its name in the marker
WRITERS = {
    "tokenizer train": lambda out, model: ["tokenizer", "train", "--input", str(TEXT), "--vocab-size", "200",
                                           "--out", out, "--quiet"],
    "data prepare": lambda out, model: ["data", "prepare", "--input", str(TEXT), "--tokenizer", model, "--out", out,
                                        "--quiet"],
    "finetune": lambda out, model: ["finetune", "--task", "classification", "--train", str(GOOD_CLS), "--model",
                                    model, "--out", out, "--max_steps", "1", "--progress", "false"],
    "distill": lambda out, model: ["distill", "--kind", "masked-lm", "--teacher", model, "--student", model,
                                   "--data", str(TEXT), "--out", out, "--max_steps", "1", "--progress", "false"],
    "convert": lambda out, model: ["convert", "--from-bert", model, "--out", out],
    "export sentence-transformers": lambda out, model: ["export", "sentence-transformers", "--model", model,
                                                        "--out", out],
}
TEXT = Path(__file__).parent / "fixtures" / "public_domain.txt"
GOOD_CLS = BAD / "bom.cls.jsonl"  # (never read: the output is checked first)


@pytest.mark.parametrize("marker_kind", ["staging directory", "marker file of earlier releases"])
@pytest.mark.parametrize("command", list(WRITERS))
def test_a_stale_marker_never_lets_a_command_delete_a_users_file(tiny_model: Path, tmp_path: Path, command: str,
                                                                 marker_kind: str,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A directory holding the command's own interrupted marker and a file of the user's: refused in one line,
    before any work, and the user's file is still there (whatever the marker says)."""
    from albert.io.output_dirs import MARKER

    out = tmp_path / "out"
    out.mkdir()
    record = json.dumps({"command": command})
    if marker_kind == "staging directory":
        (out / MARKER).mkdir()
        (out / MARKER / ".command").write_text(record)
    else:
        (out / MARKER).write_text(record)
    (out / "notes.txt").write_text("the user's")
    code, err = run_cli(WRITERS[command](str(out), str(tiny_model)), capsys)
    assert "did not write" in one_line_error(code, err) and "notes.txt" in err
    assert (out / "notes.txt").read_text() == "the user's"


def test_finetune_keeps_training_state_apart_and_writes_a_model_card(tiny_model: Path, tmp_path: Path) -> None:
    from albert.train.finetune import finetune
    from albert.train.finetune_settings import FinetuneSettings

    rows = [{"text": f"{w} day", "label": lab} for w, lab in (("fine", "pos"), ("bad", "neg"))] * 8
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = finetune(FinetuneSettings(task="classification", train=str(train), dev=str(train), model=str(tiny_model),
                                    out=str(tmp_path / "clf"), max_steps=2, progress=False, precision="fp32"))
    held = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "spiece.model", "dev_results.json", "README.md"} <= held
    assert not held & {"run", "checkpoints", "metrics.jsonl", ".albert-incomplete"}, held
    assert (tmp_path / "clf-run" / "checkpoints").is_dir() and (tmp_path / "clf-run" / "metrics.jsonl").is_file()
    card = (out / "README.md").read_text()
    assert "classification" in card and "neg, pos" in card and "albert finetune --task classification" in card
    assert "accuracy" in card and "commit" in card


# ----- resume -----
def _run(prepared_data: Path, run_dir: Path, **kw: object):  # noqa: ANN202
    from albert.train.settings import PretrainSettings

    values = dict(data=str(prepared_data), run_dir=str(run_dir), model="albert-tiny", max_seq_length=32,
                  batch_size=4, max_steps=4, save_every=2, eval_every=100, eval_examples=8, learning_rate=1e-3,
                  progress=False, precision="fp32", num_threads=1, log_every=1)
    values.update(kw)
    return PretrainSettings(**values)  # type: ignore[arg-type]


def test_resume_survives_a_torn_metrics_line_and_a_killed_cleanup(prepared_data: Path, tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    from albert.train.pretrain import pretrain

    run = tmp_path / "run"
    pretrain(_run(prepared_data, run, stop_after=2))
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "loss": 1.2')  # killed mid-write
    (run / "checkpoints" / "step_00000001").mkdir()  # a checkpoint whose removal was killed
    (run / "checkpoints" / "step_00000001" / "trainer.pt").write_bytes(b"")
    with caplog.at_level("WARNING"):
        pretrain(_run(prepared_data, run), resume=True)
    assert "torn last record" in caplog.text and "removed step_00000001" in caplog.text
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if json.loads(line).get("kind") != "eval"]
    assert steps == sorted(set(steps)) and steps[-1] == 4


def test_a_trainer_state_holding_objects_is_refused(prepared_data: Path, tmp_path: Path) -> None:
    from albert.train.pretrain import pretrain

    run = tmp_path / "run"
    pretrain(_run(prepared_data, run, stop_after=2))
    last = run / "checkpoints" / "step_00000002" / "trainer.pt"
    last.write_bytes(pickle.dumps({"step": 2, "payload": Path("/")}))  # an object: weights_only refuses it
    with pytest.raises(TrainingError, match="holds objects other than tensors") as raised:
        pretrain(_run(prepared_data, run), resume=True)
    assert "weights_only" not in str(raised.value)
    torch.save({"step": "two"}, last)
    with pytest.raises(TrainingError, match="not a training state"):
        pretrain(_run(prepared_data, run), resume=True)


def test_checkpoint_error_family() -> None:
    assert issubclass(CheckpointError, AlbertError) and issubclass(DataError, ValueError)


# ----- settings files: --config and a run's settings.yaml -----
@pytest.mark.parametrize("content,says", [
    (b"max_steps: 5\nrun_dir: caf\xe9\n", "is not UTF-8 text"),
    (b"!!python/object/apply:os.system ['echo pwned > PWNED']\n", "is not a settings file albert reads"),
    (b"a: [1, 2\n", "is not a settings file albert reads"),
    (b"- 1\n- 2\n", "must hold a mapping of settings"),
])
def test_a_settings_file_albert_cannot_read_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        prepared_data: Path, content: bytes, says: str) -> None:
    """As --config, and as the settings.yaml of a run being resumed: one line, exit 2, nothing executed."""
    pwned = tmp_path / "pwned"  # where the YAML's command would write, were it ever run
    content = content.replace(b"PWNED", str(pwned).encode())
    config = tmp_path / "settings.yaml"
    config.write_bytes(content)
    code, err = run_cli(["pretrain", "--config", str(config), "--data", str(prepared_data)], capsys)
    assert says in one_line_error(code, err)
    run = tmp_path / "run"
    (run / "checkpoints" / "step_00000001").mkdir(parents=True)
    for name in ("model.safetensors", "trainer.pt"):
        (run / "checkpoints" / "step_00000001" / name).write_bytes(b"x")
    (run / "settings.yaml").write_bytes(content)
    code, err = run_cli(["pretrain", "--data", str(prepared_data), "--run_dir", str(run), "--model", "albert-tiny",
                         "--resume"], capsys)
    assert says in one_line_error(code, err)
    assert not pwned.exists()


@pytest.mark.parametrize("key,value,says", [
    ("max_steps", ".nan", "max_steps must be an integer"), ("eval_every", ".inf", "eval_every must be an integer"),
    ("save_every", "2.5", "save_every must be an integer"), ("batch_size", "4294967296", "at most 2,147,483,647"),
    ("num_threads", "100000", "num_threads must be at most 1,024"), ("beta2", "1.5", "beta2 must be in [0, 1)"),
    ("warmup_steps", "-3", "warmup_steps must be >= 0"), ("learning_rate", ".nan", "finite"),
])
def test_every_numeric_setting_is_checked_with_its_type_and_range(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                   prepared_data: Path, key: str, value: str,
                                                                   says: str) -> None:
    """The same rule from a YAML file and from the command line: one line, exit 2 (NaN and infinity in an integer
    setting traced back; a count past 32 bits or a thread count in the billions went on to fail far away)."""
    config = tmp_path / "settings.yaml"
    config.write_text(f"{key}: {value}\n", encoding="utf-8")
    code, err = run_cli(["pretrain", "--config", str(config), "--data", str(prepared_data)], capsys)
    assert says in one_line_error(code, err)
    code, err = run_cli(["pretrain", "--data", str(prepared_data), f"--{key}", value], capsys)
    assert says in one_line_error(code, err)


def test_a_model_whose_weights_hold_nan_is_refused_in_one_line(tiny_model: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """One reader for every model directory (albert's own, a teacher, a BERT): a NaN weight would be NaN in every
    answer; it is refused naming the weight."""
    import shutil

    from safetensors.torch import load_file, save_file

    bad = tmp_path / "nan-model"
    shutil.copytree(tiny_model, bad)
    state = load_file(bad / "model.safetensors")
    name = next(k for k in state if "word_embeddings" in k)
    state[name][3, 0] = float("nan")
    save_file(state, bad / "model.safetensors")
    code, err = run_cli(["embed", "--model", str(bad), "call me ishmael."], capsys)
    assert "word_embeddings.weight holds NaN or infinite values" in one_line_error(code, err)


def test_input_files_are_refused_by_type_before_they_are_opened(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A FIFO (which would block), a device (which never ends), a symlink loop and a directory given as --file or
    --train: one line each, naming what the path is."""
    import os

    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.jsonl"
    loop.symlink_to(loop)
    zero = tmp_path / "zero.jsonl"  # a link to a device, with the name of a data file
    zero.symlink_to("/dev/zero")
    folder = tmp_path / "folder.jsonl"
    folder.mkdir()
    for path, says in ((fifo, "is a FIFO"), (zero, "is a device"), (loop, "cannot be read"),
                       (folder, "is a directory")):
        code, err = run_cli(["embed", "--file", str(path), "--model", "albert-small-en"], capsys)
        assert says in one_line_error(code, err), path
        code, err = run_cli(["finetune", "--task", "classification", "--train", str(path), "--out",
                             str(tmp_path / "out")], capsys)
        assert says in one_line_error(code, err), path


# ----- model directories -----
def _config_cases() -> dict[str, Any]:
    """Hostile config.json contents: the classes a model directory's config can break (not one example each)."""
    return {
        "an integer of 5,000 digits": ('{"vocab_size": ' + "9" * 5000 + "}", "4,300 digits"),
        "100,000-deep nesting": ("[" * 100_000 + "]" * 100_000, "nested too deep"),
        "a float field given a string": ({"hidden_dropout_prob": "abc"}, "'hidden_dropout_prob' must be"),
        "a float field given a list": ({"layer_norm_eps": [0.1]}, "'layer_norm_eps' must be"),
        "an int field given a string": ({"num_labels": "x"}, "'num_labels' must be an integer"),
        "an int field given a float": ({"hidden_size": 64.5}, "'hidden_size' must be an integer"),
        "a string field given a number": ({"hidden_act": 3}, "'hidden_act' must be a string"),
        "labels as a list": ({"id2label": ["a", "b"]}, "'id2label' must be"),
        "labels keyed by words": ({"id2label": {"x": "a"}}, "'id2label' must be"),
        "labels with gaps": ({"id2label": {"0": "a", "5": "b"}}, "number the labels 0 to 1"),
        "architectures a number": ({"architectures": 5}, "'architectures' must be"),
        "pad_token_id outside the vocabulary": ({"pad_token_id": 10 ** 6}, "not an id of the vocabulary"),
        "a JSON list": ("[1, 2]", "does not hold a JSON object"),
    }


@pytest.mark.parametrize("case", list(_config_cases()))
def test_a_hostile_config_json_is_one_line_naming_file_and_field(case: str, tiny_model: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    content, says = _config_cases()[case]
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    if not isinstance(content, str):
        content = json.dumps({**json.loads((tiny_model / "config.json").read_text()), **content})
    (model / "config.json").write_text(content)
    for args in (["fill-mask", "a [MASK]"], ["serve", "--port", "0"], ["evaluate", "--data", "x.jsonl"]):
        code, err = run_cli([*args, "--model", str(model)], capsys)
        line = one_line_error(code, err)
        assert says in line and "config.json" in line, (args, line)


def test_model_files_that_are_not_regular_files_are_refused_by_type(tiny_model: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """config.json as a link to /dev/zero (which never ends), a FIFO (which blocks) or a symlink loop."""
    for kind, says in (("zero", "is a device"), ("fifo", "is a FIFO"), ("loop", "cannot be read")):
        model = tmp_path / kind
        shutil.copytree(tiny_model, model)
        config = model / "config.json"
        config.unlink()
        if kind == "zero":
            config.symlink_to("/dev/zero")
        elif kind == "fifo":
            os.mkfifo(config)
        else:
            config.symlink_to(config)
        code, err = run_cli(["fill-mask", "a [MASK]", "--model", str(model)], capsys)
        assert says in one_line_error(code, err), kind


def test_weights_and_index_are_checked(tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A sharded index whose shard lies outside the model directory, an index that is not an object of names,
    integer weights (which would load as their raw integers), a .bin whose keys are not names."""
    from safetensors.torch import load_file, save_file

    weights = load_file(tiny_model / "model.safetensors")

    def model_with(name: str) -> Path:
        model = tmp_path / name
        shutil.copytree(tiny_model, model)
        (model / "model.safetensors").unlink()
        return model

    outside = model_with("outside")
    (outside / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {k: "../../elsewhere/model.safetensors" for k in weights}}))
    for index, says in (([1, 2], "'weight_map' must be"), ({"weight_map": ["a"]}, "'weight_map' must be")):
        bad = model_with(f"index-{len(str(index))}")
        (bad / "model.safetensors.index.json").write_text(json.dumps(index))
        code, err = run_cli(["fill-mask", "a [MASK]", "--model", str(bad)], capsys)
        assert says in one_line_error(code, err)
    code, err = run_cli(["fill-mask", "a [MASK]", "--model", str(outside)], capsys)
    assert "outside the model directory" in one_line_error(code, err)
    integers = model_with("int8")
    save_file({k: v.to(torch.int8) for k, v in weights.items()}, str(integers / "model.safetensors"))
    code, err = run_cli(["fill-mask", "a [MASK]", "--model", str(integers)], capsys)
    assert "is int8" in one_line_error(code, err)
    keyed = model_with("bin")
    torch.save({1: torch.zeros(2), **weights}, keyed / "pytorch_model.bin")
    code, err = run_cli(["fill-mask", "a [MASK]", "--model", str(keyed)], capsys)
    assert "names → tensors" in one_line_error(code, err)


def test_a_hostile_tokenizer_json_is_one_line(tiny_model: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    for name, change, says in (("empty", lambda t: t["model"].update(vocab=[]), "model.vocab is empty"),
                               ("ids", lambda t: t["added_tokens"][0].update(id="x"), "integer id"),
                               ("unk", lambda t: t["model"].update(unk_id=10 ** 9), "unk_id")):
        model = tmp_path / name
        shutil.copytree(tiny_model, model)
        doc = json.loads((model / "tokenizer.json").read_text())
        change(doc)
        (model / "tokenizer.json").write_text(json.dumps(doc))
        (model / "spiece.model").unlink()
        code, err = run_cli(["embed", "a", "--model", str(model)], capsys)
        assert says in one_line_error(code, err), name


# ----- disk faults -----
def _small_disk(tmp_path: Path) -> tuple[Path, Path]:
    """A 1 MiB file system and a read-only one (tmpfs; where mounting is not allowed, the test is skipped)."""
    full, read_only = tmp_path / "full", tmp_path / "ro"
    full.mkdir()
    read_only.mkdir()
    for target, options in ((full, "size=1M"), (read_only, "ro,size=1M")):
        if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                          capture_output=True, timeout=60).returncode != 0:
            pytest.skip("cannot mount a small file system here (needs root)")
    with open(full / "filler", "wb") as f:  # all but a few KiB taken: every command's first big write fails
        try:
            f.write(b"\0" * (1024 * 1024 - 16 * 1024))
        except OSError:
            pass
    return full, read_only


def test_a_full_or_read_only_disk_is_one_line(tiny_model: Path, prepared_data: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    full, read_only = _small_disk(tmp_path)
    try:
        text = str(Path(__file__).parent / "fixtures" / "public_domain.txt")
        for place, says in ((full, "space left|the disk full"), (read_only, "Read-only file system")):
            for args in (["data", "prepare", "--input", text, "--tokenizer", str(tiny_model), "--out",
                          str(place / "data")],
                         ["tokenizer", "train", "--input", text, "--out", str(place / "tok"), "--vocab-size", "500"],
                         ["export", "onnx", "--model", str(tiny_model), "--out", str(place / "m.onnx")],
                         ["pretrain", "--data", str(prepared_data), "--model", "albert-tiny", "--run_dir",
                          str(place / "run"), "--max_seq_length", "32", "--batch_size", "4", "--max_steps", "2",
                          "--save_every", "1", "--progress", "false", "--precision", "fp32"]):
                code, err = run_cli(args, capsys)
                assert re.search(says, one_line_error(code, err)), args
                for child in place.iterdir() if place == full else []:
                    if child.name != "filler":
                        shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink()
    finally:
        for place in (full, read_only):
            subprocess.run(["umount", str(place)], capture_output=True, timeout=60)


# ----- inputs -----
def test_a_huge_line_costs_what_a_model_length_text_costs(tiny_model: Path, tmp_path: Path) -> None:
    """A 50 MB line on stdin: embed and fill-mask read it only as far as the model's length (their peak memory
    stays near the line's own bytes, where tokenizing it whole took gigabytes)."""
    line = ("the whale swam in the sea " * 2_000_000)[:50_000_000]
    script = ("import resource, subprocess, sys\n"
              "p = subprocess.run([sys.executable, '-m', 'albert', *sys.argv[1:]], input=sys.stdin.read(), "
              "capture_output=True, text=True)\n"
              "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024, "
              "p.stderr.strip().splitlines()[-1:] )")
    for args, rc in ((["embed", "--model", str(tiny_model)], 0), (["fill-mask", "--model", str(tiny_model)], 2)):
        done = subprocess.run([sys.executable, "-c", script, *args], input=line, capture_output=True, text=True,
                              timeout=600)
        code, peak_mb = done.stdout.split()[:2]
        assert int(code) == rc and int(peak_mb) < 1500, done.stdout


def test_a_request_asking_for_too_many_fillers_is_refused_before_any_work(tiny_model: Path) -> None:
    """[MASK]s × top_k is what a fill-mask request costs (each filler a rebuilt sentence): over --max-fillers it is
    a 400 naming the limit, and a normal request behind it is answered."""
    import albert
    from albert.serving.launch import ServeSettings, build_app, running
    from test_server import post

    pipe = albert.pipeline("fill-mask", model=tiny_model, precision="fp32")
    app, batcher = build_app(pipe, "fill-mask", ServeSettings(max_fillers=200))
    try:
        with running(app) as url:
            status, body = post(url + "/fill-mask", {"inputs": "a [MASK] " * 40, "parameters": {"top_k": 10}})
            assert status == 400 and "--max-fillers" in body["error"] and "400 fillers" in body["error"]
            status, body = post(url + "/fill-mask", {"inputs": ["a [MASK] b"] * 3, "parameters": {"top_k": 67}})
            assert status == 400  # 3 × 67 = 201: across the inputs of one request
            status, body = post(url + "/fill-mask", {"inputs": "call me [MASK].", "parameters": {"top_k": 5}})
            assert status == 200 and len(body) == 5
    finally:
        batcher.close()


# ----- the server: HTTP limits, shutdown, keys -----
def _raw(url: str, data: bytes, timeout: float = 10) -> tuple[int, Any]:
    """Send raw bytes on a new connection; the status and JSON body of what comes back (0, reason on none)."""
    import socket

    host, port = url.split("//")[1].split(":")
    with socket.create_connection((host, int(port))) as s:
        s.settimeout(timeout)
        try:
            s.sendall(data)
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        except OSError as e:
            return 0, type(e).__name__
    head, _, body = out.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_http_limits_answer_json_and_close(tiny_model: Path) -> None:
    """Headers too large or too many: 431; headers or body too slow: 408; what the parser refuses: 400; each a JSON
    error (the server keeps answering others)."""
    import albert
    from albert.serving.launch import ServeSettings, build_app, running

    settings = ServeSettings(header_timeout=1, body_timeout=1, max_header_bytes=8192, max_headers=20)
    app, batcher = build_app(albert.pipeline("fill-mask", model=tiny_model, precision="fp32"), "fill-mask", settings)
    try:
        with running(app, settings) as url:
            cases = [
                (b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 2_000_000 + b"\r\n\r\n", 431, "8,192 bytes"),
                (b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 431, "8,192 bytes"),
                (b"GET /health HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(50)) + b"\r\n", 431,
                 "more than 20 headers"),
                (b"GET /health HTTP/1.1\r\nHost: x\r\n", 408, "headers did not arrive"),
                (b"POST /fill-mask HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{", 408, "body did not arrive"),
                (b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400, "malformed"),
                (b"POST /fill-mask HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400,
                 "malformed"),
                (b"BREW /health HTTP/1.1\r\nHost: x\r\n\r\n", 400, "malformed"),
            ]
            for data, status, says in cases:
                got, body = _raw(url, data)
                assert got == status and says in body["error"], (data[:40], got, body)
            assert _raw(url, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[0] == 200
    finally:
        batcher.close()


def _until(condition: Any, what: str) -> None:
    """Wait for an event (the deadline only bounds a hang: it times nothing)."""
    import time

    deadline = time.monotonic() + 120
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


def test_a_request_whose_client_left_leaves_the_queue(tiny_model: Path) -> None:
    import socket

    import albert
    from albert.serving.launch import ServeSettings, build_app, running

    app, batcher = build_app(albert.pipeline("fill-mask", model=tiny_model, precision="fp32"), "fill-mask",
                             ServeSettings(max_batch=2))
    body = json.dumps({"inputs": ["a [MASK] of the sea" + " and the ship" * 30] * 1900}).encode()
    try:
        with running(app) as url:
            host, port = url.split("//")[1].split(":")
            with socket.create_connection((host, int(port))) as s:
                s.sendall(b"POST /fill-mask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n" % len(body) + body)
                _until(lambda: batcher.queued_inputs > 1000, "the request's inputs queued")
            # the disconnect is seen, and the request's inputs are dropped (not answered: 1,900 inputs two at a time
            # would take far longer than the drop)
            _until(lambda: batcher.queued_inputs == 0, "the queue emptied")
    finally:
        batcher.close()


def _queued(url: str) -> float:
    """The served process's albert_queue_inputs (its /metrics)."""
    import urllib.request

    with urllib.request.urlopen(url.rsplit("/", 1)[0] + "/metrics", timeout=60) as r:
        found = re.search(r"^albert_queue_inputs (\S+)$", r.read().decode(), re.M)
    return float(found.group(1)) if found else 0.0


def _serve_and_post(model: Path, grace: str, small: bool) -> tuple[int, str, dict[str, Any]]:
    """`albert serve --grace G --max-batch 2`, a request of 1,900 inputs (950 model calls) and, once it is queued (seen
    in /metrics), `small`'s request of one input answered while it is in flight; then SIGTERM: (exit code, stderr,
    each request's (status, answer))."""
    import signal
    import threading
    import urllib.error
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-m", "albert", "serve", "--model", str(model), "--port", "0",
                             "--grace", grace, "--max-batch", "2", "--precision", "fp32"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = re.search(r"http://\S+?/fill-mask", proc.stdout.readline()).group(0)  # type: ignore[union-attr]
        answers: dict[str, Any] = {}

        def post(name: str, n: int) -> None:
            data = json.dumps({"inputs": ["a [MASK] of the sea" + " and the ship" * 30] * n}).encode()
            request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=300) as r:
                    answers[name] = (r.status, json.loads(r.read()))
            except urllib.error.HTTPError as e:
                answers[name] = (e.code, json.loads(e.read()))

        _until(lambda: _ready(url), "the server answers")
        big = threading.Thread(target=post, args=("big", 1900))
        big.start()
        _until(lambda: _queued(url) > 1000, "the big request queued")
        if small:  # answered between the big request's model calls (requests take turns)
            post("small", 1)
            assert _queued(url) > 0, "the big request is still in flight"
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(300)  # bounds a hang
        big.join()
        return code, proc.stderr.read(), answers  # type: ignore[union-attr]
    finally:
        proc.kill()


def _ready(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url.rsplit("/", 1)[0] + "/health", timeout=10) as r:
            return r.status == 200
    except OSError:
        return False


def test_sigterm_answers_the_requests_in_flight_and_exits(tiny_model: Path) -> None:
    """A small request sent while a big one is in flight is answered at once (requests take turns); the big one,
    still queued when the stop begins, is answered whole within --grace; then the process exits 0."""
    code, err, answers = _serve_and_post(tiny_model, "300", small=True)
    assert code == 0 and "Traceback" not in err, (code, err)
    assert answers["small"][0] == 200 and len(answers["small"][1]) == 1 and len(answers["small"][1][0]) == 5
    assert answers["big"][0] == 200 and len(answers["big"][1]) == 1900


def test_sigterm_past_grace_answers_503_and_exits(tiny_model: Path) -> None:
    """With --grace 0 the stop's deadline has passed at once: a request still queued (1,900 inputs, two at a time)
    is answered 503 with a JSON error naming --grace, and the process exits 0 without a traceback."""
    code, err, answers = _serve_and_post(tiny_model, "0", small=False)
    assert code == 0 and "Traceback" not in err, (code, err)
    assert answers["big"][0] == 503 and "--grace" in answers["big"][1]["error"]


def test_an_api_key_with_non_ascii_characters_is_accepted_as_utf8(tiny_model: Path) -> None:
    import base64

    import albert
    from albert.serving.launch import ServeSettings, build_app, running
    from test_server import request

    key = "clé-secrète-ß"
    settings = ServeSettings(api_key=key)
    app, batcher = build_app(albert.pipeline("fill-mask", model=tiny_model, precision="fp32"), "fill-mask", settings)
    try:
        with running(app, settings) as url:
            ok = _raw(url, b"GET /info HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer "
                      + key.encode() + b"\r\n\r\n")
            assert ok[0] == 200
            basic = base64.b64encode(b"user:" + key.encode()).decode()
            assert request(url + "/info", headers={"Authorization": f"Basic {basic}"})[0] == 200
            assert _raw(url, b"GET /info HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer "
                        + key.encode("latin-1", "replace") + b"\r\n\r\n")[0] == 401
    finally:
        batcher.close()


def test_a_windowed_task_refuses_a_text_beyond_its_limit(toy_models: dict[str, tuple[Path, Path]],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Tagging and QA read a text whole, in windows (memory grows with it): past MAX_WINDOWED_CHARS, one line."""
    from albert.tasks.registry import MAX_WINDOWED_CHARS

    model, _ = toy_models["token-classification"]
    text = "ten " * (MAX_WINDOWED_CHARS // 4 + 1)
    code, err = run_cli(["tag", text, "--model", str(model)], capsys)
    assert "split it" in one_line_error(code, err)


@pytest.mark.parametrize("flag,value", [("--grace", "nan"), ("--grace", "inf"), ("--grace", "-1"),
                                        ("--header-timeout", "inf"), ("--body-timeout", "nan")])
def test_serve_refuses_a_time_that_is_not_a_finite_number(tiny_model: Path, flag: str, value: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Seconds that never end (inf) or compare false with everything (nan): one line, before the model loads."""
    code, err = run_cli(["serve", "--model", str(tiny_model), "--port", "0", flag, value], capsys)
    assert flag in one_line_error(code, err) and "finite" in err


def test_claim_output_removes_and_replaces_only_what_it_wrote(tmp_path: Path) -> None:
    """The staging protocol's edges: an earlier release's marker file alone is cleared by the same command; a name
    the user creates while the command writes is refused, not replaced; a failure after the user put a file in the
    directory the command made keeps the directory and the file."""
    from albert.io.output_dirs import MARKER, claim_output

    old = tmp_path / "old"
    old.mkdir()
    (old / MARKER).write_text(json.dumps({"command": "convert"}))
    with claim_output(old, "convert") as staging:
        (staging / "config.json").write_text("{}")
    assert sorted(p.name for p in old.iterdir()) == ["config.json"]

    raced = tmp_path / "raced"
    with pytest.raises(AlbertError, match="appeared there while albert was writing"):
        with claim_output(raced, "convert") as staging:
            (staging / "config.json").write_text("ours")
            (raced / "config.json").write_text("the user's")
    assert (raced / "config.json").read_text() == "the user's" and not (raced / MARKER).exists()

    made = tmp_path / "made"
    with pytest.raises(KeyboardInterrupt):
        with claim_output(made, "convert") as staging:
            (made / "notes.txt").write_text("the user's")
            raise KeyboardInterrupt
    assert sorted(p.name for p in made.iterdir()) == ["notes.txt"]


def test_a_save_cut_short_never_becomes_a_checkpoint(tmp_path: Path) -> None:
    """A save interrupted by a kill or a full disk leaves step_N.tmp with files that look whole (trainer.pt cut
    short): a resume removes it and starts from the last whole checkpoint. Only a save that recorded its end
    (COMPLETE, with every file at its size) and lost its rename is completed."""
    import torch

    from albert.train.checkpoints import COMPLETE, checkpoint_dirs, save_checkpoint, tidy_checkpoints

    model = torch.nn.Linear(4, 4)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    run = tmp_path / "run"
    whole = save_checkpoint(run, 4, model, optimizer, scheduler, {}, keep=3)
    finished = save_checkpoint(run, 8, model, optimizer, scheduler, {}, keep=3)
    os.replace(finished, finished.with_name(finished.name + ".tmp"))  # killed between COMPLETE and the rename
    torn = save_checkpoint(run, 12, model, optimizer, scheduler, {}, keep=3)
    torn_tmp = torn.with_name(torn.name + ".tmp")
    os.replace(torn, torn_tmp)
    (torn_tmp / COMPLETE).unlink()  # a save cut short never wrote its record...
    trainer = torn_tmp / "trainer.pt"
    trainer.write_bytes(trainer.read_bytes()[:100])  # ...and its trainer.pt is short
    tidy_checkpoints(run)
    assert [p.name for p in checkpoint_dirs(run)] == [whole.name, finished.name]
    assert not torn_tmp.exists()


# ----- BERT directories (convert --from-bert) -----
def _tiny_bert(out: Path) -> Path:
    """A 2-layer random BERT, as transformers saves it, with a vocab.txt."""
    import torch
    import transformers

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "whale", "sea", "##s", "a"]
    out.mkdir()
    (out / "vocab.txt").write_text("\n".join(words) + "\n")
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=32)
    transformers.BertModel(config).save_pretrained(out)
    return out


def test_a_bert_directory_is_read_as_strictly_as_albert_s_own(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """convert --from-bert reads config.json, the vocabulary and the weights through albert's model-directory
    readers: a FIFO or a device never hangs or grows, each field has its type and range, every weight its shape,
    no NaN and no integer weights, --layers is numbers; each fault one line, never a converted model."""
    import torch
    from safetensors.torch import load_file, save_file

    good = _tiny_bert(tmp_path / "good")

    def variant(name: str, change: Any) -> Path:
        d = tmp_path / name
        shutil.copytree(good, d)
        change(d)
        return d

    def config_with(**fields: Any) -> Any:
        def change(d: Path) -> None:
            cfg = json.loads((d / "config.json").read_text())
            (d / "config.json").write_text(json.dumps(cfg | fields))
        return change

    def weights_with(edit: Any) -> Any:
        def change(d: Path) -> None:
            state = load_file(str(d / "model.safetensors"))
            edit(state)
            save_file(state, str(d / "model.safetensors"))
        return change

    def fifo(name: str) -> Any:
        def change(d: Path) -> None:
            (d / name).unlink()
            os.mkfifo(d / name)
        return change

    def put(name: str, text: str) -> Any:
        return lambda d: (d / name).write_text(text)

    cases = [
        (config_with(num_hidden_layers="abc"), "num_hidden_layers must be an integer"),
        (config_with(num_hidden_layers=[2]), "num_hidden_layers must be an integer"),
        (config_with(num_hidden_layers=2.5), "num_hidden_layers must be an integer"),
        (put("config.json", '{"hidden_size": ' + "9" * 5000 + "}"), "more than 4,300 digits"),
        (config_with(hidden_size=32, num_attention_heads=2), "the word embeddings must be"),
        (put("config.json", "[1, 2]"), "is not a JSON object"),
        (fifo("config.json"), "is a FIFO"), (fifo("vocab.txt"), "is a FIFO"), (fifo("model.safetensors"), "is a FIFO"),
        (lambda d: ((d / "vocab.txt").unlink(), (d / "vocab.txt").symlink_to("/dev/zero")), "is a device"),
        (weights_with(lambda s: s.pop("embeddings.word_embeddings.weight")), "word embeddings must be"),
        (weights_with(lambda s: s.pop("embeddings.LayerNorm.weight")), "LayerNorm.weight' is missing"),
        (weights_with(lambda s: s.update({"encoder.layer.0.attention.self.query.weight": torch.zeros(8, 16)})),
         "query.weight' is (8, 16)"),
        (weights_with(lambda s: s["embeddings.word_embeddings.weight"].__setitem__((3, 2), float("nan"))),
         "NaN or infinite"),
        (weights_with(lambda s: s.update({"pooler.dense.bias": torch.zeros(16, dtype=torch.int8)})), "is int8"),
        (put("model.safetensors", ""), "cannot read weights"),
        (lambda d: (d / "model.safetensors").unlink(), "no weights in"),
        (put("tokenizer.json", json.dumps({"model": {"type": "WordPiece", "vocab": ["a", "b"]}})),
         "model.vocab must be an object"),
        (put("tokenizer.json", json.dumps({"model": {"type": "WordPiece", "vocab": {"a": 0.5}}})),
         "model.vocab must be an object"),
        (put("tokenizer.json", "[" * 100_000 + "]" * 100_000), "nested too deep"),
    ]
    for n, (change, says) in enumerate(cases):
        source = variant(f"case{n}", change)
        code, err = run_cli(["convert", "--from-bert", str(source), "--out", str(tmp_path / f"out{n}")], capsys)
        assert says in one_line_error(code, err), (n, err)
        assert not (tmp_path / f"out{n}").exists()
    for layers, says in (("a", "--layers takes layer numbers"), ("0,,1", "--layers takes"), ("", "--layers takes"),
                         ("0,0", "each once"), ("5", "must name layers")):
        code, err = run_cli(["convert", "--from-bert", str(good), "--layers", layers, "--out", str(tmp_path / "o")],
                            capsys)
        assert says in one_line_error(code, err), (layers, err)
    code, err = run_cli(["convert", "--from-bert", str(good), "--out", str(tmp_path / "fine")], capsys)
    assert code == 0, err
    buffers = variant("with-position-ids", weights_with(lambda s: s.update(  # (as older BERTs and MiniLM store it)
        {"embeddings.position_ids": torch.arange(32).unsqueeze(0)})))
    code, err = run_cli(["convert", "--from-bert", str(buffers), "--out", str(tmp_path / "fine2")], capsys)
    assert code == 0, err


def test_settings_files_and_prepared_data_are_read_as_strictly_as_model_files(
        tiny_model: Path, prepared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A --config that is a FIFO or a device, nested too deep, or that gives data of the wrong shape; a prepared
    directory whose meta.json is not albert's: each one line, before any work."""
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    deep = tmp_path / "deep.yaml"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    wrong_data = tmp_path / "data.yaml"
    wrong_data.write_text("data: {a: 1}\nteacher: t\nstudent: s\nout: o\n")
    for command in (["pretrain"], ["finetune", "--task", "classification"], ["distill"]):
        for config, says in ((fifo, "is a FIFO"), (Path("/dev/zero"), "is a device"), (deep, "nested too deep")):
            code, err = run_cli([*command, "--config", str(config)], capsys)
            assert says in one_line_error(code, err), (command, config, err)
    code, err = run_cli(["distill", "--config", str(wrong_data)], capsys)
    assert "data must be a path or a list of paths" in one_line_error(code, err)
    broken = tmp_path / "prepared"
    shutil.copytree(prepared_data, broken)
    for meta, says in (("[1, 2]", "must be a JSON object"), ('{"vocab_size": "x", "splits": {}}', "vocab_size must"),
                       ('{"vocab_size": 10, "splits": {"train": ["../../x"]}}', "shard file names")):
        (broken / "meta.json").write_text(meta)
        code, err = run_cli(["pretrain", "--data", str(broken), "--model", "albert-tiny", "--run_dir",
                             str(tmp_path / "run"), "--max_steps", "1", "--progress", "false"], capsys)
        assert says in one_line_error(code, err), (meta, err)


def test_fill_mask_on_the_command_line_has_the_server_s_work_limit(tiny_model: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """One text asking for [MASK]s × --top-k past --max-fillers is refused before the model loads (the server
    refuses the same request); a file of many ordinary texts is not (the limit is per text)."""
    code, err = run_cli(["fill-mask", "--model", str(tiny_model), "--top-k", "200", "the " + "[MASK] " * 5000],
                        capsys)
    assert "input 1 asks for 5,000 [MASK]s × top_k 200 = 1,000,000 fillers; at most 10,000" in one_line_error(code, err)
    code, err = run_cli(["fill-mask", "--model", str(tiny_model), "--max-fillers", "0", "a [MASK]"], capsys)
    assert "--max-fillers must be >= 1" in one_line_error(code, err)
    many = tmp_path / "many.txt"
    many.write_text("the [MASK] sea.\n" * 3000)
    code, err = run_cli(["fill-mask", "--model", str(tiny_model), "--top-k", "5", "--json", "--file", str(many)],
                        capsys)
    assert code == 0, err


def test_bodies_in_flight_have_one_budget_and_a_small_request_still_passes(tiny_model: Path) -> None:
    """Stalled uploads each declaring a large body hold what they declared, all together at most --max-bodies:
    the next large one is answered 503 with Retry-After at once (never buffered), a chunked one growing past
    what is left too, while a small request is answered as ever; a stalled upload's share comes back when it ends."""
    import socket

    import albert
    from albert.serving.launch import ServeSettings, build_app, running

    settings = ServeSettings(max_body=200_000, max_bodies=450_000, body_timeout=30)
    app, batcher = build_app(albert.pipeline("fill-mask", model=tiny_model, precision="fp32"), "fill-mask", settings)
    try:
        with running(app, settings) as url:
            host, port = url.split("//")[1].split(":")
            stalled = []
            for _ in range(2):  # 2 x 199,999 declared, all but the last byte sent: 399,998 of 450,000 held
                s = socket.create_connection((host, int(port)))
                s.sendall(b"POST /fill-mask HTTP/1.1\r\nHost: x\r\nContent-Length: 199999\r\n\r\n" + b" " * 199_998)
                stalled.append(s)
            big = b"POST /fill-mask HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b" " * 100_000
            status, body = _raw(url, big)
            assert status == 503 and "--max-bodies 450,000" in body["error"]
            chunk = b" " * 60_000
            chunked = (b"POST /fill-mask HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       + b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(2)) + b"0\r\n\r\n")
            status, body = _raw(url, chunked)
            assert status == 503 and "retry shortly" in body["error"]
            small = json.dumps({"inputs": "the [MASK] sea."}).encode()
            status, body = _raw(url, b"POST /fill-mask HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: "
                                + str(len(small)).encode() + b"\r\n\r\n" + small)
            assert status == 200 and len(body) == 5
            for s in stalled:
                s.close()
            for _ in range(100):  # the server sees the closes: their shares come back
                status, body = _raw(url, big)
                if status != 503:
                    break
                time.sleep(0.05)
            assert status == 400, body  # admitted, read, and refused for what it is (not JSON)
    finally:
        batcher.close()


def test_a_file_job_writes_as_it_goes_and_resumes_where_it_stopped(tiny_model: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """--out FILE gets one JSON line per input as they come; killed, --resume skips the inputs its complete lines
    answer and cuts a torn last line, so the file equals an uninterrupted run's, line for line. An existing file is
    never replaced, and a file longer than the job's inputs is not this job's."""
    lines = [line for line in (Path(__file__).parent / "fixtures" / "public_domain.txt").read_text().splitlines()
             if line.strip()][:300]
    inputs = tmp_path / "in.txt"
    inputs.write_text("\n".join(lines) + "\n")
    whole = tmp_path / "whole.jsonl"
    for command in (["embed"], ["fill-mask", "--top-k", "2"]):
        texts = inputs if command[0] == "embed" else tmp_path / "masked.txt"
        if command[0] == "fill-mask":
            texts.write_text("\n".join(f"{t[:40]} [MASK]." for t in lines[:40]) + "\n")
        whole.unlink(missing_ok=True)
        code, err = run_cli([*command, "--model", str(tiny_model), "--file", str(texts), "--out", str(whole)], capsys)
        assert code == 0, err
        full = whole.read_text().splitlines()
        assert len(full) == len(texts.read_text().splitlines())
        killed = tmp_path / f"killed-{command[0]}.jsonl"
        killed.write_text("\n".join(full[:17]) + "\n" + full[17][:25])  # a kill mid-line after 17 answers
        code, err = run_cli([*command, "--model", str(tiny_model), "--file", str(texts), "--out", str(killed),
                             "--resume"], capsys)
        assert code == 0, err
        assert killed.read_text().splitlines() == full
        code, err = run_cli([*command, "--model", str(tiny_model), "--file", str(texts), "--out", str(killed)], capsys)
        assert "albert never replaces a file" in one_line_error(code, err)
        assert killed.read_text().splitlines() == full
    longer = tmp_path / "longer.jsonl"
    longer.write_text("{}\n" * 301)
    code, err = run_cli(["embed", "--model", str(tiny_model), "--file", str(inputs), "--out", str(longer), "--resume"],
                        capsys)
    assert "answers 301 inputs and there are 300" in one_line_error(code, err)
    code, err = run_cli(["embed", "--model", str(tiny_model), "a text", "--resume"], capsys)
    assert "--resume continues an --out file" in one_line_error(code, err)
