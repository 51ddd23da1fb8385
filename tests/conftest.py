"""Shared fixtures: a vocabulary trained on the committed public-domain text, once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

import toy_tasks as toy

FIXTURES = Path(__file__).parent / "fixtures"
TEXT = FIXTURES / "public_domain.txt"


@pytest.fixture(scope="session")
def text_lines() -> list[str]:
    return [line for line in TEXT.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from albert.vocabulary import train_tokenizer

    out = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer([TEXT], out, vocab_size=1000, progress=False)
    return out


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir: Path):
    from albert.tokenizer import AlbertTokenizer

    return AlbertTokenizer.from_pretrained(tokenizer_dir)


@pytest.fixture(scope="session")
def prepared_data(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    from albert.data.shards import prepare_data

    out = tmp_path_factory.mktemp("data") / "prepared"
    prepare_data([TEXT], tokenizer_dir, out, eval_fraction=0.1, workers=1, docs_per_shard=40, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_model(prepared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ALBERT pretrained for 30 steps on the fixture text (model + tokenizer directory)."""
    from albert.train.pretrain import pretrain
    from albert.train.settings import PretrainSettings

    run = tmp_path_factory.mktemp("tiny") / "run"
    return pretrain(PretrainSettings(data=str(prepared_data), run_dir=str(run), model="albert-tiny",
                                     max_seq_length=64, batch_size=16, max_steps=30, learning_rate=5e-3,
                                     warmup_steps=3, precision="fp32", eval_every=0, save_every=0, progress=False,
                                     num_threads=1))


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


# Each fine-tuning kind on its toy task (tests/toy_tasks.py): its rows, and a learning rate at which 300 steps learn
# it (regression collapses to the mean at 2e-3)
TOY_KINDS = {
    "classification": (lambda rng: [dict(r, label="two or more" if r["label"] >= 2 else "under two")
                                    for r in toy.regression(rng, 300)], 2e-3),
    "regression": (lambda rng: toy.regression(rng, 300), 1e-3),
    "token-classification": (lambda rng: toy.tagging(rng, 300), 2e-3),
    "multiple-choice": (lambda rng: toy.multiple_choice(rng, 300), 2e-3),
    "qa": (lambda rng: toy.qa(rng, 300), 2e-3),
    "qa-v2": (lambda rng: toy.qa(rng, 300, unanswerable_share=0.3), 2e-3),  # with the original's answerability head
}


@pytest.fixture(scope="session")
def toy_models(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """kind → (the tiny model fine-tuned 300 steps on the kind's toy task, its dev file of 60 rows)."""
    import random

    from albert.train.finetune import FinetuneSettings, finetune

    made = {}
    for kind, (rows, learning_rate) in TOY_KINDS.items():
        directory = tmp_path_factory.mktemp(f"toy-{kind}")
        train, dev = toy.write_split(rows(random.Random(0)), directory / "data", dev=60)
        out = finetune(FinetuneSettings(task=kind, train=str(train), dev=str(dev), model=str(tiny_model),
                                        out=str(directory / "model"), max_seq_length=64, max_steps=300,
                                        batch_size=8 if kind == "multiple-choice" else 16, learning_rate=learning_rate,
                                        answerability_head=kind == "qa-v2", precision="fp32", progress=False,
                                        num_threads=1, seed=0))
        made[kind] = (out, dev)
    return made
