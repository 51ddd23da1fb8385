"""`albert distill` (sentence vectors) through the one loop: the student's vectors move toward the teacher's on
held-out texts; the teacher's vectors are computed once and cached by the teacher's and the texts' hashes; a kill
and --resume continue exactly; the card names the teacher's hash and licence."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import albert
from albert.data.texts import select_texts
from albert.errors import ConfigError, DataError
from albert.train.distill import DistillSettings
from albert.train.sentence_vectors import weights_sha256
from albert.train.settings import build_settings
from conftest import shared_dir
from toy_tasks import wait_until_stopped

TEXT = Path(__file__).parent / "fixtures" / "public_domain.txt"


@pytest.fixture(scope="session")
def st_teacher(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sentence-transformers directory (albert's export of the tiny model): the teacher, through
    sentence-transformers."""
    def build(out: Path) -> None:
        run = subprocess.run([sys.executable, "-m", "albert", "export", "sentence-transformers", "--model",
                              str(tiny_model), "--out", str(out), "--normalize"], capture_output=True, text=True,
                             timeout=300)
        assert run.returncode == 0, run.stderr

    return shared_dir(tmp_path_factory, "st-teacher", build)


def student(tiny_model: Path, tmp_path: Path) -> Path:
    """The tiny model with a fresh encoder: far from the teacher, so distilling has something to do."""
    import torch

    torch.manual_seed(1)
    config = albert.AlbertConfig.from_json_file(tiny_model / "config.json")
    out = tmp_path / "student"
    albert.AlbertModel(config).save_pretrained(out)
    albert.AlbertTokenizer.from_pretrained(tiny_model).save_pretrained(out)
    return out


def args(teacher: Path, start: Path, out: Path, cache: Path, steps: int = 30) -> list[str]:
    return ["distill", "--teacher", str(teacher), "--student", str(start), "--data", str(TEXT), "--out", str(out),
            "--max_texts", "600", "--eval_texts", "100", "--max_seq_length", "48", "--max_steps", str(steps),
            "--batch_size", "16", "--learning_rate", "2e-3", "--eval_every", str(steps), "--save_every", "5",
            "--cache_dir", str(cache), "--precision", "fp32", "--num_threads", "1", "--progress", "false",
            "--teacher_licence", "Apache-2.0"]


def cli(*a: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "albert", *a], capture_output=True, text=True, timeout=600, env=env)


def test_texts_are_paragraphs_and_sentences_always_the_same() -> None:
    texts = select_texts([str(TEXT)], 500, 0.5, seed=0)
    assert texts == select_texts([str(TEXT)], 500, 0.5, seed=0) and len(texts) == 500
    assert all(len(t.split()) >= 4 for t in texts)
    assert sum(len(t.split()) < 25 for t in texts) > 50  # short texts (queries) beside the paragraphs


def test_shorter_paragraphs_are_read_when_asked(tmp_path: Path) -> None:
    glosses = tmp_path / "glosses.txt"
    glosses.write_text("a nub of coal\n\nthe action of accomplishing something\n\ntwo words\n\n"
                       "something that is communicated by or to or between people or groups\n", encoding="utf-8")
    with pytest.raises(DataError, match="8 words"):
        select_texts([str(glosses)], 10, 0.0, seed=0)
    assert sorted(select_texts([str(glosses)], 10, 0.0, seed=0, min_words=3)) == [
        "a nub of coal", "something that is communicated by or to or between people or groups",
        "the action of accomplishing something"]
    with pytest.raises(ConfigError, match="min_words"):
        build_settings(DistillSettings, {"teacher": "t", "student": "s", "data": [str(glosses)], "out": "o",
                                         "min_words": 0})


def test_student_moves_toward_the_teacher_and_the_vectors_are_cached(st_teacher: Path, tiny_model: Path,
                                                                    tmp_path: Path, albert_cli: Any) -> None:
    start = student(tiny_model, tmp_path)
    cache = tmp_path / "cache"
    before = build_settings(DistillSettings, {"teacher": str(st_teacher), "student": str(start), "data": [str(TEXT)],
                                              "out": str(tmp_path / "x"), "max_texts": 600, "eval_texts": 100,
                                              "max_seq_length": 48, "cache_dir": str(cache)})
    run = cli(*args(st_teacher, start, tmp_path / "a", cache))
    assert run.returncode == 0, run.stderr
    metrics = [json.loads(x) for x in (tmp_path / "a-run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in metrics if "loss" in r]
    assert len(losses) == 30 and np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    result = json.loads((tmp_path / "a" / "distill_results.json").read_text())
    # the untrained student's agreement, measured the same way
    from albert.train.sentence_vectors import SentenceVectorTask, teacher_vectors

    texts = select_texts(before.data, 600, 0.5, 0)
    vectors = teacher_vectors(before, texts)
    tok = albert.AlbertTokenizer.from_pretrained(start)
    ids = tok(texts[:100], truncation=True, max_length=48)["input_ids"]
    import torch

    task = SentenceVectorTask(ids, torch.from_numpy(vectors[:100]), ids, torch.from_numpy(vectors[:100]), before, 0)
    untrained = task.evaluate(albert.AlbertModel.from_pretrained(start), torch.device("cpu"), None)
    assert result["eval_cosine"] > untrained["eval_cosine"] + 0.1, (result, untrained)
    # the teacher's vectors: cached once, keyed by teacher and texts, reused (not rewritten) by a second run
    cached = list(cache.glob("teacher-vectors/*/vectors.npy"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    np.testing.assert_allclose(np.load(cached[0]), vectors)
    again = albert_cli(*args(st_teacher, start, tmp_path / "b", cache, steps=2))
    assert again.returncode == 0, again.stderr
    assert cached[0].stat().st_mtime_ns == stamp and len(list(cache.glob("teacher-vectors/*"))) == 1
    # the card names the teacher by its weights' hash, and its licence
    card = (tmp_path / "a" / "README.md").read_text()
    assert weights_sha256(st_teacher) in card and "Apache-2.0" in card
    # the student is an ordinary ALBERT directory: transformers loads it, albert embeds with it
    import transformers
    transformers.AlbertModel.from_pretrained(tmp_path / "a")
    assert len(albert.pipeline("feature-extraction", model=tmp_path / "a", precision="fp32")("a whale")) == 64


def test_neighbour_batches_hold_near_texts_and_the_relation_term_vanishes_at_the_teacher() -> None:
    import torch

    from albert.train.sentence_vectors import neighbour_blocks, relation_loss

    g = torch.Generator().manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(20, 32, generator=g), dim=-1)
    vectors = centres.repeat_interleave(16, 0) + 0.1 * torch.randn(320, 32, generator=g)  # 20 topics of 16 texts
    blocks = neighbour_blocks(vectors, 16, seed=0)
    assert sorted(r for b in blocks for r in b) == list(range(320)) and all(len(b) == 16 for b in blocks)
    assert blocks == neighbour_blocks(vectors, 16, seed=0)  # the same batches on resume

    def mean_cosine_within(batches: list[list[int]]) -> float:
        v = torch.nn.functional.normalize(vectors, dim=-1)
        return float(torch.stack([(v[b] @ v[b].T).mean() for b in batches]).mean())
    random = torch.randperm(320, generator=g).view(20, 16).tolist()
    assert mean_cosine_within(blocks) > mean_cosine_within(random) + 0.3
    teacher = torch.randn(8, 32, generator=g)
    assert float(relation_loss(2 * teacher, teacher, 0.05)) < 1e-4  # only directions count
    assert float(relation_loss(torch.randn(8, 32, generator=g), teacher, 0.05)) > 0.1


def test_a_kill_then_resume_continues_exactly(tiny_model: Path, tmp_path: Path) -> None:
    """An albert teacher (its mean vectors), with the relation term on batches of neighbours: SIGKILL after step 7
    (checkpoint at 5), --resume: the same losses."""
    start = student(tiny_model, tmp_path)
    cache = tmp_path / "cache"
    extra = ("--relation_weight", "0.5", "--neighbour_batches", "true")
    whole = cli(*args(tiny_model, start, tmp_path / "whole", cache, steps=12), *extra)
    assert whole.returncode == 0, whole.stderr
    proc = subprocess.Popen([sys.executable, "-m", "albert", *args(tiny_model, start, tmp_path / "killed", cache,
                                                                   steps=12), *extra],
                            env={**os.environ, "ALBERT_TEST_STOP_AT_STEP": "7"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    wait_until_stopped(proc, "step 7")
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)
    resumed = cli(*args(tiny_model, start, tmp_path / "killed", cache, steps=12), *extra, "--resume")
    assert resumed.returncode == 0, resumed.stderr

    def losses(run: Path) -> list[float]:
        return [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]

    assert len(losses(tmp_path / "killed-run")) == 12
    assert losses(tmp_path / "killed-run") == losses(tmp_path / "whole-run")


def test_refusals_are_one_line(tiny_model: Path, tmp_path: Path, albert_cli: Any) -> None:
    for extra, says in ((["--teacher", str(tiny_model), "--student", str(tiny_model), "--out", str(tmp_path / "o")],
                         "distill needs --data"),
                        ([*args(tiny_model, tiny_model, tmp_path / "o", tmp_path / "c")[1:], "--max_texts", "50"],
                         "max_texts (50) must exceed eval_texts (100)")):
        run = albert_cli("distill", *extra)
        assert run.returncode == 2 and says in run.stderr and run.stderr.count("\n") == 1, run.stderr


@pytest.fixture(scope="session")
def small_en_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture text prepared with the embedded model's vocabulary."""
    from albert.data.shards import prepare_data
    from albert.io.hub import packaged_models_dir

    return shared_dir(tmp_path_factory, "small-en-prepared", lambda out: prepare_data(
        [TEXT], packaged_models_dir() / "albert-small-en", out, eval_fraction=0.1, workers=1, docs_per_shard=40,
        progress=False))


def test_masked_lm_soft_targets_vanish_for_the_teacher_itself_and_a_shallower_student_learns(
        small_en_data: Path, tmp_path: Path, albert_cli: Any) -> None:
    """Masked LM, the embedded model as teacher: a student that is the teacher has nothing to learn (KL 0 at the
    first step); one with half the passes, started as the teacher itself (the same shared weights, run 6 times
    instead of 12), lowers its KL to the teacher. (The first run is a real process; the second runs in this one.)"""

    def run(out: Path, overrides: str, steps: int) -> list[dict]:
        runner = cli if steps == 1 else albert_cli
        done = runner("distill", "--kind", "masked-lm", "--teacher", "albert-small-en", "--student", "albert-small-en",
                      "--data", str(small_en_data), "--out", str(out), "--student_overrides", overrides,
                      "--max_seq_length", "64", "--batch_size", "8", "--max_steps", str(steps), "--learning_rate",
                      "5e-4", "--eval_every", str(steps), "--save_every", "0", "--eval_examples", "32", "--precision",
                      "fp32", "--num_threads", "1", "--progress", "false", "--warmup_fraction", "0",
                      "--kd_temperature", "1")
        assert done.returncode == 0, done.stderr
        return [json.loads(x) for x in (out.parent / f"{out.name}-run" / "metrics.jsonl").read_text().splitlines()]

    same = run(tmp_path / "same", "{}", 1)
    assert same[0]["kd_loss"] == pytest.approx(0.0, abs=1e-4)
    shallow = run(tmp_path / "half", json.dumps({"num_hidden_layers": 6}), 16)
    kd = [r["kd_loss"] for r in shallow if "kd_loss" in r]
    assert kd[0] > 0.05 and np.mean(kd[-4:]) < 0.8 * np.mean(kd[:4]), kd
    assert json.loads((tmp_path / "half" / "config.json").read_text())["num_hidden_layers"] == 6
    assert "eval_mlm_acc" in json.loads((tmp_path / "half" / "distill_results.json").read_text())


@pytest.mark.parametrize("kind", ["classification", "regression", "token-classification", "multiple-choice", "qa",
                                  "qa-v2"])
def test_task_soft_targets_vanish_for_the_teacher_itself(toy_models: dict[str, tuple[Path, Path]], kind: str,
                                                         tiny_model: Path, tmp_path: Path, albert_cli: Any) -> None:
    """Each kind's soft targets (probabilities, a regression's values, each token's tags, span ends): a student
    that is its teacher has no distillation loss, and one with a fresh head has some. (Without dropout: the teacher
    runs in eval mode, the student in training mode.)"""
    teacher, dev = toy_models[kind]
    no_dropout = json.dumps({"classifier_dropout_prob": 0.0, "hidden_dropout_prob": 0.0,
                             "attention_probs_dropout_prob": 0.0})

    def first_kd_loss(student: Path, out: Path) -> float:
        run = albert_cli("distill", "--kind", "task", "--teacher", str(teacher), "--student", str(student), "--data",
                         str(dev.parent / "train.jsonl"), "--out", str(out), "--student_overrides", no_dropout,
                         "--max_seq_length", "64", "--batch_size", "8", "--max_steps", "1", "--eval_every", "0",
                         "--save_every", "0", "--precision", "fp32", "--num_threads", "1", "--progress", "false")
        assert run.returncode == 0, run.stderr
        return json.loads((out.parent / f"{out.name}-run" / "metrics.jsonl").read_text().splitlines()[0])["kd_loss"]

    assert first_kd_loss(teacher, tmp_path / "same") == pytest.approx(0.0, abs=1e-4)
    assert first_kd_loss(tiny_model, tmp_path / "fresh") > 1e-3


def test_task_distillation_teaches_a_fresh_head_the_teacher_s_task(toy_models: dict[str, tuple[Path, Path]],
                                                                    tiny_model: Path, tmp_path: Path,
                                                                    albert_cli: Any) -> None:
    """A classifier's soft labels into the tiny model with a new head (kd_weight 1: no true labels at all):
    the student scores on dev as a learner of the task does, and `albert evaluate` reads it as a fine-tuned model."""
    teacher, dev = toy_models["classification"]
    out = tmp_path / "student"
    run = cli("distill", "--kind", "task", "--teacher", str(teacher), "--student", str(tiny_model), "--data",
              str(dev.parent / "train.jsonl"), str(dev), "--out", str(out), "--max_seq_length", "64", "--batch_size",
              "16", "--max_steps", "300", "--learning_rate", "2e-3", "--kd_weight", "1", "--eval_every", "300",
              "--save_every", "0", "--precision", "fp32", "--num_threads", "1", "--progress", "false")
    assert run.returncode == 0, run.stderr
    scores = json.loads((out / "dev_results.json").read_text())
    assert scores["accuracy"] >= 0.75, scores
    evaluated = albert_cli("evaluate", "--model", str(out), "--data", str(dev), "--precision", "fp32")
    assert evaluated.returncode == 0 and json.loads(evaluated.stdout)["accuracy"] >= 0.75, evaluated.stderr


def test_a_student_made_ready_for_finetuning_keeps_its_vectors(tiny_model: Path, tmp_path: Path, albert_cli: Any
                                                              ) -> None:
    """`albert convert --for-finetuning`: the last hidden states scaled by a power of two to an RMS per dimension near
    1 over the texts, the pooler the identity (tanh of the [CLS] state), the normalised sentence vectors as before; a
    model whose last pass shares its layer keeps its states and its pooler takes the scale."""
    import torch

    import albert

    config = albert.AlbertConfig.from_json_file(tiny_model / "config.json")
    config.num_hidden_groups = config.num_hidden_layers  # a student with a group per pass, as --from-bert makes
    torch.manual_seed(0)
    start = tmp_path / "student"
    albert.AlbertModel(config).save_pretrained(start)
    albert.AlbertTokenizer.from_pretrained(tiny_model).save_pretrained(start)
    run = cli("convert", "--for-finetuning", str(start), "--texts", str(TEXT), "--out", str(tmp_path / "ready"))
    assert run.returncode == 0, run.stderr
    texts = select_texts([str(TEXT)], 40, 0.0, seed=0)

    def states(directory: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        model = albert.AlbertModel.from_pretrained(directory).eval()
        enc = albert.AlbertTokenizer.from_pretrained(directory)(texts, padding=True, truncation=True, max_length=64,
                                                                return_tensors="pt")
        with torch.no_grad():
            out = model(**enc)
        return out.last_hidden_state, out.pooler_output, enc["attention_mask"].bool()

    (before, _, mask), (after, pooled, _) = states(start), states(tmp_path / "ready")
    rms = float(after[mask].pow(2).mean().sqrt())
    assert 2 ** -0.5 <= rms <= 2 ** 0.5, rms
    scale = 2.0 ** round(math.log2(float(after[mask].norm() / before[mask].norm())))
    assert torch.equal(after, before * scale)  # one power of two for every state: the same vectors, exactly
    torch.testing.assert_close(pooled, torch.tanh(after[:, 0]))

    def vectors(directory: Path) -> np.ndarray:
        return np.array(albert.pipeline("feature-extraction", model=directory, precision="fp32")(texts, normalize=True))

    np.testing.assert_allclose(vectors(tmp_path / "ready"), vectors(start), atol=1e-5)
    # a last pass sharing its group (the tiny model: one group, every pass): its states stay, the pooler takes the
    # scale, so a classifier reads tanh of the scaled [CLS] state as from a model whose states were scaled
    shared = albert_cli("convert", "--for-finetuning", str(tiny_model), "--texts", str(TEXT), "--out",
                        str(tmp_path / "s"))
    assert shared.returncode == 0 and "the pooler" in shared.stdout, shared.stderr
    (plain, _, mask), (kept, pooled, _) = states(tiny_model), states(tmp_path / "s")
    assert torch.equal(kept, plain)
    pooler = albert.AlbertModel.from_pretrained(tmp_path / "s").pooler
    scale = float(pooler.weight[0, 0])
    assert math.log2(scale).is_integer() and torch.equal(pooler.weight, torch.eye(len(pooler.weight)) * scale)
    torch.testing.assert_close(pooled, torch.tanh(plain[:, 0] * scale))
    again = albert_cli("convert", "--for-finetuning", str(start), "--texts", str(TEXT), "--out",
                       str(tmp_path / "ready"))
    assert again.returncode == 2 and again.stderr.count("\n") == 1, again.stderr


def test_distill_settings_are_grouped_by_kind_and_the_flat_names_still_work(tmp_path: Path) -> None:
    """A kind's settings live in its group (`vectors`, `soft`), given as --group.name, a YAML mapping, or the flat
    name of before; each failed check says its own setting; a run directory saved flat still resumes."""
    from albert.cli import parse_command_line
    from albert.commands import given_settings
    from albert.train.loop import check_resumable
    from albert.train.settings import load_settings, save_settings

    base = {"teacher": "t", "student": "s", "data": ["d.txt"], "out": "o"}
    flat = build_settings(DistillSettings, {**base, "max_texts": 3900, "temperature": 0.1})
    given = given_settings(parse_command_line(["distill", "--vectors.max_texts", "3900", "--temperature", "0.1"]))
    dotted = build_settings(DistillSettings, {**base, **given})
    yaml_file = tmp_path / "s.yaml"
    yaml_file.write_text("vectors:\n  max_texts: 3900\n  temperature: 0.1\n")
    nested = load_settings(DistillSettings, yaml_file, base)
    assert flat == dotted == nested and flat.vectors.max_texts == 3900 and flat.vectors.temperature == 0.1
    soft = build_settings(DistillSettings, {**base, "kind": "task", "soft.kd_weight": 0.5})
    assert soft.soft.kd_weight == 0.5
    with pytest.raises(ConfigError, match="--kd_weight is a setting of --kind masked-lm and task"):
        build_settings(DistillSettings, {**base, "kd_weight": 0.5})
    for values, says in (({"temperature": 0}, "temperature must be > 0"),
                         ({"kind": "task", "kd_temperature": 0}, "kd_temperature"),
                         ({"kind": "task", "kd_weight": 2}, "kd_weight must be in"),
                         ({"relation_weight": -1}, "relation_weight"),
                         ({"vectors": [1]}, "vectors must be a mapping"), ({"vectors.nope": 1}, "nope"),
                         ({"kind": "task", "max_texts": 5000}, "--max_texts is a setting of --kind sentence-vectors"),
                         ({"student": ""}, "distill needs --student")):
        with pytest.raises(ConfigError, match=says):
            build_settings(DistillSettings, {**base, **values})
    run = tmp_path / "run"
    run.mkdir()
    (run / "settings.yaml").write_text("\n".join(f"{k}: {v!r}" if not isinstance(v, list) else f"{k}: {v}"
                                                 for k, v in {**base, "max_texts": 3900, "temperature": 0.1}.items()))
    check_resumable(run, flat)  # saved before the groups: the same settings
    with pytest.raises(Exception, match="max_texts: 3900 → 3901"):
        check_resumable(run, build_settings(DistillSettings, {**base, "max_texts": 3901, "temperature": 0.1}))
    save_settings(flat, run / "settings.yaml")  # saved with them: nested, and the same again
    check_resumable(run, flat)


def test_a_teacher_its_cache_and_the_student_are_checked_before_they_are_trusted(
        st_teacher: Path, tiny_model: Path, with_head: Any, prepared_data: Path, tmp_path: Path,
        albert_cli: Any, caplog: pytest.LogCaptureFixture) -> None:
    """modules.json names only sentence-transformers' own modules (nothing else is imported); the cached vectors
    are keyed by everything that changes them and verified when read (a damaged file is recomputed, never
    trusted); a teacher of another width, an unknown --student_overrides field, a --max_seq_length past the
    student's positions (or too short to hold a text) and a classifier as a masked-LM teacher are each refused in one
    line."""
    import shutil

    from albert.train.sentence_vectors import teacher_fingerprint, teacher_vectors

    evil = tmp_path / "evil"
    shutil.copytree(st_teacher, evil)
    (evil / "modeling_evil.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').close()\nclass Evil: pass\n")
    base = [*args(evil, tiny_model, tmp_path / "o", tmp_path / "c")]
    for modules, says in (("{not json", "invalid JSON"), ("[1, 2]", "must be a list of modules"),
                          ('[{"type": "os.system", "path": ""}]', "'os.system' is not one of"),
                          ('[{"type": "modeling_evil.Evil", "path": ""}]', "'modeling_evil.Evil' is not one of"),
                          ('[{"type": "sentence_transformers.models.Pooling", "path": "../.."}]', "leads outside")):
        (evil / "modules.json").write_text(modules)
        done = albert_cli(*base)
        assert done.returncode == 2 and says in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert not (tmp_path / "ran").exists()
    # what sentence-transformers itself would trip on: its weights read first as albert reads its own, and any
    # fault of its loader one line
    (evil / "modules.json").write_text((st_teacher / "modules.json").read_text())
    weights = evil / "model.safetensors"
    for damage, says in ((lambda: weights.write_bytes(b"\x10\x00" * 10), "cannot read weights"),
                         (lambda: (evil / "1_Pooling" / "config.json").write_text('{"pooling_mode_median": true}'),
                          "sentence-transformers cannot load this teacher")):
        saved = {p: p.read_bytes() for p in (weights, evil / "1_Pooling" / "config.json")}
        damage()
        done = albert_cli(*base)
        errors = [line for line in done.stderr.splitlines() if line.startswith("albert: error: ")]
        assert done.returncode == 2 and len(errors) == 1 and says in errors[0], done.stderr
        assert "Traceback" not in done.stderr
        for path, data in saved.items():
            path.write_bytes(data)

    settings = build_settings(DistillSettings, {"teacher": str(st_teacher), "student": str(tiny_model),
                                                "data": [str(TEXT)], "out": "o", "max_texts": 300, "eval_texts": 50,
                                                "max_seq_length": 48, "cache_dir": str(tmp_path / "cache")})
    texts = select_texts([str(TEXT)], 300, 0.5, seed=0)
    first = teacher_vectors(settings, texts)
    cached = next((tmp_path / "cache").rglob("vectors.npy"))
    for damage in (lambda p: p.write_bytes(p.read_bytes()[:200]),  # truncated
                   lambda p: np.save(p, first[:10]),  # another shape
                   lambda p: np.save(p, np.array([object()] * len(first), dtype=object), allow_pickle=True)):
        damage(cached)
        caplog.clear()
        assert np.array_equal(teacher_vectors(settings, texts), first)
        assert "recomputing" in caplog.text
    other = tmp_path / "cls-pooling"
    shutil.copytree(st_teacher, other)
    pooling = other / "1_Pooling" / "config.json"
    pooling.write_text(pooling.read_text().replace('"pooling_mode_mean_tokens": true', '"pooling_mode_mean_tokens": '
                                                   'false').replace('"pooling_mode_cls_token": false',
                                                                    '"pooling_mode_cls_token": true'))
    assert teacher_fingerprint(other, 48) != teacher_fingerprint(st_teacher, 48) != teacher_fingerprint(st_teacher, 32)

    narrow = tmp_path / "narrow"
    config = albert.AlbertConfig.from_json_file(tiny_model / "config.json")
    albert.AlbertModel(dataclasses.replace(config, hidden_size=32, intermediate_size=64)).save_pretrained(narrow)
    albert.AlbertTokenizer.from_pretrained(tiny_model).save_pretrained(narrow)
    for extra, says in ((["--student", str(narrow)], "the teacher's vectors have 64 dimensions and the student's 32"),
                        (["--student_overrides", '{"nope": 1}'], "unknown config field(s) to override: nope"),
                        (["--max_seq_length", "100000"], "exceeds the student's"),
                        (["--max_seq_length", "0"], "max_seq_length must be >= 8")):
        done = albert_cli(*args(st_teacher, tiny_model, tmp_path / "x", tmp_path / "cache"), *extra)
        errors = [line for line in done.stderr.splitlines() if line.startswith("albert: error: ")]
        assert done.returncode == 2 and len(errors) == 1 and says in errors[0] and "Traceback" not in done.stderr
    done = albert_cli("distill", "--kind", "masked-lm", "--teacher", str(with_head("text-classification")),
                      "--student", str(tiny_model), "--data", str(prepared_data), "--out", str(tmp_path / "m"))
    assert done.returncode == 2 and "needs a teacher with a masked-LM head" in done.stderr, done.stderr
