"""The training loop: loss goes down, SIGKILL + resume continues identically, 2 processes = 1 process,
and bad settings or data fail before training starts."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from albert.cli import parse_command_line
from albert.commands import given_settings
from albert.errors import ConfigError, DataError, TrainingError
from albert.train.pretrain import pretrain
from albert.train.settings import PretrainSettings, load_settings
from toy_tasks import wait_until_stopped

ALBERT = [sys.executable, "-m", "albert.cli"]


def tiny(prepared: Path, run_dir: Path, **kw) -> PretrainSettings:
    values = dict(data=str(prepared), run_dir=str(run_dir), model="albert-tiny", max_seq_length=64,
                  batch_size=8, max_steps=12, learning_rate=2e-3, warmup_steps=2, precision="fp32", eval_every=0,
                  save_every=4, eval_examples=32, progress=False, num_threads=1, log_every=1)
    values.update(kw)
    return PretrainSettings(**values)


def losses(run_dir: Path) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x)["loss"] for x in lines if x.strip() and "kind" not in json.loads(x)]


def test_loss_decreases_and_final_model_loads(prepared_data: Path, tmp_path: Path) -> None:
    s = tiny(prepared_data, tmp_path / "run", max_steps=60, learning_rate=5e-3, eval_every=30, save_every=30)
    torch.set_num_threads(2)
    final = pretrain(s)  # (on num_threads=1)
    assert torch.get_num_threads() == 2, "the caller's thread count is restored"
    curve = losses(tmp_path / "run")
    assert len(curve) == 60 and sum(curve[-10:]) / 10 < sum(curve[:10]) / 10 - 0.5
    from albert import AlbertForMaskedLM, AlbertTokenizer

    AlbertForMaskedLM.from_pretrained(final)
    AlbertTokenizer.from_pretrained(final)
    evals = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if '"eval"' in x]
    assert [e["step"] for e in evals] == [30, 60] and all(0 <= e["eval_sop_acc"] <= 1 for e in evals)


def test_sigkill_then_resume_matches_uninterrupted(prepared_data: Path, tmp_path: Path) -> None:
    ref = tmp_path / "ref"
    pretrain(tiny(prepared_data, ref, max_steps=16))
    expected = losses(ref)

    run = tmp_path / "killed"
    args = [*ALBERT, "pretrain", "--data", str(prepared_data), "--run_dir", str(run), "--model", "albert-tiny",
            "--max_seq_length", "64", "--batch_size", "8", "--max_steps", "16", "--learning_rate", "2e-3",
            "--warmup_steps", "2", "--precision", "fp32", "--eval_every", "0", "--save_every", "4",
            "--progress", "false", "--num_threads", "1", "--eval_examples", "32", "--log_every", "1"]
    env = {**os.environ, "ALBERT_TEST_STOP_AT_STEP": "10"}  # the process stops itself after step 10
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_until_stopped(proc, "step 10")
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)
    assert len(losses(run)) == 10  # killed after step 10's record, two steps past the checkpoint at step 8
    out = subprocess.run([*args, "--resume"], capture_output=True, text=True, env=os.environ, timeout=600)
    assert out.returncode == 0, out.stderr
    assert losses(run) == expected  # step for step, bit for bit


def test_stop_after_then_resume_matches_and_init_from_checkpoint(prepared_data: Path, tmp_path: Path) -> None:
    ref = tmp_path / "ref"
    pretrain(tiny(prepared_data, ref, max_steps=10, save_every=5))
    run = tmp_path / "staged"
    pretrain(tiny(prepared_data, run, max_steps=10, save_every=5, stop_after=5))  # the schedule spans 10 steps
    assert len(losses(run)) == 5 and (run / "checkpoints" / "step_00000005").is_dir()
    pretrain(tiny(prepared_data, run, max_steps=10, save_every=5), resume=True)
    assert losses(run) == losses(ref)
    # each start and resume records what ran it (for model cards)
    sessions = [json.loads(line) for line in (run / "sessions.jsonl").read_text().splitlines()]
    assert [x["step"] for x in sessions] == [0, 5] and all(x["torch"] == torch.__version__ for x in sessions)
    assert {"commit", "albert", "device", "processes", "started"} <= set(sessions[0])
    # a second stage starts from a checkpoint's weights with its own optimizer and schedule
    stage2 = tmp_path / "stage2"
    start = run / "checkpoints" / "step_00000005"
    pretrain(tiny(prepared_data, stage2, max_steps=3, save_every=0, init_from=str(start), learning_rate=1e-3))
    assert len(losses(stage2)) == 3 and losses(stage2)[0] < losses(ref)[0]
    # a stopped second stage resumes from its own checkpoint even when init_from's is gone (not committed)
    stage2b = tmp_path / "stage2b"
    pretrain(tiny(prepared_data, stage2b, max_steps=3, save_every=1, stop_after=2, init_from=str(start),
                  learning_rate=1e-3))
    start.rename(tmp_path / "moved")
    pretrain(tiny(prepared_data, stage2b, max_steps=3, save_every=1, init_from=str(start), learning_rate=1e-3),
             resume=True)
    (tmp_path / "moved").rename(start)
    assert losses(stage2b) == losses(stage2)
    # and `albert plot` follows it back: stage 1's five steps, then stage 2's three
    from albert.train.plot import read_history

    history, _, starts = read_history(stage2)
    assert [r["step"] for r in history] == list(range(1, 9)) and starts == [5]


def test_two_processes_match_one(prepared_data: Path, tmp_path: Path) -> None:
    # dropout masks differ per process by design, so the comparison runs without dropout
    no_dropout = {"classifier_dropout_prob": 0.0}
    one = tmp_path / "one"
    pretrain(tiny(prepared_data, one, max_steps=5, save_every=0, model_overrides=no_dropout))
    common = ["--data", str(prepared_data), "--model", "albert-tiny", "--max_seq_length", "64", "--batch_size", "8",
              "--max_steps", "5", "--learning_rate", "2e-3", "--warmup_steps", "2", "--precision", "fp32",
              "--eval_every", "0", "--save_every", "0", "--progress", "false", "--num_threads", "1",
              "--log_every", "1", "--model_overrides", '{"classifier_dropout_prob": 0.0}']
    two = tmp_path / "two"
    # a free port, not a fixed one: another run's rendezvous on the same machine would take it (EADDRINUSE)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
                          "-m", "albert.cli", "pretrain", *common, "--run_dir", str(two)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    a, b = losses(one), losses(two)
    assert len(a) == len(b) == 5
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-4, (a, b)


def test_errors_before_training(prepared_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings(PretrainSettings, None, {"data": "x", "learning_rat": 1})
    with pytest.raises(ConfigError, match="must be an integer"):
        load_settings(PretrainSettings, None, {"data": "x", "batch_size": "many"})
    with pytest.raises(DataError, match="not a prepared data directory"):
        pretrain(tiny(tmp_path, tmp_path / "r1"))
    with pytest.raises(DataError, match="vocab_size"):
        pretrain(tiny(prepared_data, tmp_path / "r2", model_overrides={"vocab_size": 50}))
    with pytest.raises(TrainingError, match="nothing to resume"):
        pretrain(tiny(prepared_data, tmp_path / "r3"), resume=True)
    # a run without checkpoints (save_every 0) still keeps its curve and final model from a new run in its dir
    pretrain(tiny(prepared_data, tmp_path / "r4", max_steps=2, save_every=0))
    curve = (tmp_path / "r4" / "metrics.jsonl").read_bytes()
    with pytest.raises(TrainingError, match=r"already holds a run \(metrics.jsonl, final\): choose another"):
        pretrain(tiny(prepared_data, tmp_path / "r4", max_steps=2, save_every=0))
    assert (tmp_path / "r4" / "metrics.jsonl").read_bytes() == curve
    given = given_settings(parse_command_line(["pretrain", "--max-steps", "5", "--precision=fp32"]))
    assert given == {"max_steps": 5, "precision": "fp32"}


def test_nonfinite_loss_stops_and_keeps_last_checkpoint(prepared_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "nan"
    with pytest.raises(TrainingError, match="non-finite"):
        pretrain(tiny(prepared_data, run, max_steps=30, learning_rate=1e6, save_every=1, max_grad_norm=0.0,
                      optimizer="adamw"))
    from albert.train.checkpoints import checkpoint_dirs

    kept = checkpoint_dirs(run)
    assert kept, "the last good checkpoint must remain"
    from safetensors.torch import load_file

    assert all(bool(t.isfinite().all()) for t in load_file(str(kept[-1] / "model.safetensors")).values())


def test_precision_auto_and_resume(prepared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   caplog: pytest.LogCaptureFixture) -> None:
    import torch

    from albert.runtime import policy as runtime
    from albert.train.loop import run_precision
    from albert.train.settings import save_settings

    cpu = torch.device("cpu")
    for units, expected in ((True, "bf16"), (False, "fp32")):  # auto follows the CPU's bf16 matrix units
        monkeypatch.setattr(runtime, "cpu_has_bf16", lambda units=units: units)
        assert run_precision(tiny(prepared_data, tmp_path / "new", precision="auto"), cpu, tmp_path / "new",
                             False) == expected
    # a resumed run keeps the precision it recorded (bf16 here), so it continues exactly...
    save_settings(tiny(prepared_data, tmp_path, precision="bf16"), tmp_path / "settings.yaml")
    with caplog.at_level("WARNING"):
        assert run_precision(tiny(prepared_data, tmp_path, precision="auto"), cpu, tmp_path, True) == "bf16"
    assert "without bf16 matrix units" in caplog.text  # ...but warns that bf16 is slow on this CPU
    caplog.clear()
    # ...and may be switched on purpose, with a warning that the curve is no longer bit-identical
    with caplog.at_level("WARNING"):
        assert run_precision(tiny(prepared_data, tmp_path, precision="fp32"), cpu, tmp_path, True) == "fp32"
    assert "not bit-identically" in caplog.text
    # the run directory records the resolved precision, never "auto"
    run = tmp_path / "auto_run"
    pretrain(tiny(prepared_data, run, precision="auto", max_steps=1, save_every=0))
    assert load_settings(PretrainSettings, run / "settings.yaml").precision == "fp32"


def test_corrupt_last_checkpoint_is_named_with_the_one_to_resume_from(prepared_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    pretrain(tiny(prepared_data, run, max_steps=4, save_every=2))
    (run / "checkpoints" / "step_00000004" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(TrainingError, match=r"step_00000004 is unreadable .*resume from step_00000002"):
        pretrain(tiny(prepared_data, run, max_steps=4, save_every=2), resume=True)
