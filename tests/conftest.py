"""Shared fixtures: a vocabulary trained on the committed public-domain text, a tiny model pretrained on it, and the
toy tasks' fine-tuned models — each built once per run, by whichever pytest-xdist worker asks first (the others
wait for it and read the same directory). Every test starts at one torch thread, and leaves it so."""

from __future__ import annotations

import io
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from filelock import FileLock

# hypothesis keeps its files (an example database, a Unicode cache) in a temporary folder, not in the checkout
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY",
                      os.path.join(tempfile.gettempdir(), f"albert-hypothesis-{os.getuid()}"))
from hypothesis import settings as hypothesis_settings  # noqa: E402

import toy_tasks as toy

FIXTURES = Path(__file__).parent / "fixtures"
TEXT = FIXTURES / "public_domain.txt"
THREADS = 1  # per worker: `pytest -n 2` keeps both of CI's cores busy, and one thread is what every test expects

# CLI subprocesses inherit this: one thread each, as the worker that runs them (two workers, two cores)
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
torch.set_num_threads(THREADS)
hypothesis_settings.register_profile("albert", database=None)
hypothesis_settings.load_profile("albert")


def run_root(factory: pytest.TempPathFactory) -> Path:
    """This run's temporary folder, common to its pytest-xdist workers (pytest-of-USER/pytest-N/, one folder per
    worker below it), or the run's own folder without xdist."""
    root = factory.getbasetemp()
    return root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root


@pytest.fixture(scope="session", autouse=True)
def _compile_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """torch.compile's caches in this run's temporary folder, shared by its workers (and the CLI processes they
    start): a graph compiled by one test is reused by another, and no run reads an earlier run's."""
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(run_root(tmp_path_factory) / "inductor")


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """A test that changes torch's thread count (a server, a training loop) does not change the next test's."""
    yield
    torch.set_num_threads(THREADS)


@pytest.fixture
def albert_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
               ) -> Callable[..., subprocess.CompletedProcess]:
    """`albert ARGS` in this process, through the same entry point as the command (albert.cli.main), as a
    CompletedProcess: for the checks that need no process of their own (each command also runs once as a real
    subprocess somewhere in the suite). An uncaught exception fails the test, as a traceback would."""
    from albert.cli import main

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
        capsys.readouterr()
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode()), encoding="utf-8"))
        code = main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["albert", *args], code, out, err)

    return run


def shared_dir(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]) -> Path:
    """A directory `build` fills once per run: under pytest-xdist, the workers' common temporary folder, built by
    the first worker that asks while the others wait on its lock; a half-built one (its builder failed) is rebuilt."""
    target = run_root(factory) / "shared" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        done = target.with_name(name + ".done")
        if not done.exists():
            shutil.rmtree(target, ignore_errors=True)
            build(target)
            done.touch()
    return target


@pytest.fixture(scope="session")
def text_lines() -> list[str]:
    return [line for line in TEXT.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from albert.tokenization.vocabulary import train_tokenizer

    return shared_dir(tmp_path_factory, "tokenizer",
                      lambda out: train_tokenizer([TEXT], out, vocab_size=1000, progress=False))


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir: Path):
    from albert.tokenization.tokenizer import AlbertTokenizer

    return AlbertTokenizer.from_pretrained(tokenizer_dir)


@pytest.fixture(scope="session")
def prepared_data(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    from albert.data.shards import prepare_data

    return shared_dir(tmp_path_factory, "prepared", lambda out: prepare_data(
        [TEXT], tokenizer_dir, out, eval_fraction=0.1, workers=1, docs_per_shard=40, progress=False))


@pytest.fixture(scope="session")
def tiny_model(prepared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ALBERT pretrained for 30 steps on the fixture text (model + tokenizer directory)."""
    from albert.train.pretrain import pretrain
    from albert.train.settings import PretrainSettings

    run = shared_dir(tmp_path_factory, "tiny", lambda run: pretrain(PretrainSettings(
        data=str(prepared_data), run_dir=str(run), model="albert-tiny", max_seq_length=64, batch_size=16,
        max_steps=30, learning_rate=5e-3, warmup_steps=3, precision="fp32", eval_every=0, save_every=0,
        progress=False, num_threads=1)))
    return run / "final"


HEADS = {"text-classification": "AlbertForSequenceClassification",
         "token-classification": "AlbertForTokenClassification",
         "question-answering": "AlbertForQuestionAnswering",
         "multiple-choice": "AlbertForMultipleChoice"}


@pytest.fixture(scope="session")
def with_head(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    """task → a directory of the tiny model with that task's head saved (untrained: for tests of the plumbing,
    since pipelines refuse a checkpoint that lacks the head's weights); tasks without a new head get tiny_model."""
    import torch

    import albert

    made: dict[str, Path] = {}

    def get(task: str) -> Path:
        if task not in HEADS:
            return tiny_model
        if task not in made:
            torch.manual_seed(0)
            out = tmp_path_factory.mktemp("head")
            getattr(albert, HEADS[task]).from_pretrained(tiny_model).save_pretrained(out)
            albert.AlbertTokenizer.from_pretrained(tiny_model).save_pretrained(out)
            made[task] = out
        return made[task]

    return get


# Each fine-tuning kind on its toy task (tests/toy_tasks.py): its rows, a learning rate and a number of steps at which
# it learns the task well above test_heads' minimum (regression collapses to the mean at 2e-3; multiple choice is right
# on every dev row after 150 steps; SQuAD 2.0 keeps 300: after 200 its bf16 answers agree with fp32 on 83% only)
TOY_KINDS = {
    "classification": (lambda rng: [dict(r, label="two or more" if r["label"] >= 2 else "under two")
                                    for r in toy.regression(rng, 300)], 2e-3, 300),
    "regression": (lambda rng: toy.regression(rng, 300), 1e-3, 200),
    "multi-label": (lambda rng: toy.multi_label(rng, 300), 2e-3, 300),
    "token-classification": (lambda rng: toy.tagging(rng, 300), 2e-3, 300),
    "multiple-choice": (lambda rng: toy.multiple_choice(rng, 300), 2e-3, 150),
    "qa": (lambda rng: toy.qa(rng, 300), 2e-3, 300),
    "qa-v2": (lambda rng: toy.qa(rng, 300, unanswerable_share=0.3), 2e-3, 300),  # with the answerability head
}


class ToyModels(Mapping[str, tuple[Path, Path]]):
    """kind → (the tiny model fine-tuned on the kind's toy task as TOY_KINDS says, its dev file of 60 rows), each kind
    fine-tuned when first asked for (a test of one kind waits for that one only; two workers train two kinds)."""

    def __init__(self, tiny_model: Path, factory: pytest.TempPathFactory) -> None:
        self.tiny_model, self.factory = tiny_model, factory

    def __getitem__(self, kind: str) -> tuple[Path, Path]:
        rows, learning_rate, steps = TOY_KINDS[kind]
        directory = shared_dir(self.factory, f"toy-{kind}", lambda d: self._finetune(d, kind, rows, learning_rate,
                                                                                       steps))
        return directory / "model", directory / "data" / "dev.jsonl"

    def _finetune(self, directory: Path, kind: str, rows: Callable[[random.Random], list[dict[str, Any]]],
                  learning_rate: float, steps: int) -> None:
        from albert.train.finetune import finetune
        from albert.train.finetune_settings import FinetuneSettings

        train, dev = toy.write_split(rows(random.Random(0)), directory / "data", dev=60)
        finetune(FinetuneSettings(task=kind, train=str(train), dev=str(dev), model=str(self.tiny_model),
                                  out=str(directory / "model"), max_seq_length=64, max_steps=steps,
                                  batch_size=8 if kind == "multiple-choice" else 16, learning_rate=learning_rate,
                                  answerability_head=kind == "qa-v2", precision="fp32", progress=False,
                                  num_threads=1, seed=0))

    def __iter__(self) -> Iterator[str]:
        return iter(TOY_KINDS)

    def __len__(self) -> int:
        return len(TOY_KINDS)


@pytest.fixture(scope="session")
def toy_models(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> ToyModels:
    return ToyModels(tiny_model, tmp_path_factory)
