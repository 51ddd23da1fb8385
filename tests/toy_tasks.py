"""Small labelled tasks every fine-tuning kind can learn from a tiny model in a few hundred steps, made from the
committed public-domain text: real sentences with numbers written into them (a number is the one thing a tiny
vocabulary's pieces tell apart at once). A head that learns nothing scores at chance on each, so a test that
asks for well above chance checks that the kind's head, loss, labels and decoding work together."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

TEXT = Path(__file__).parent / "fixtures" / "public_domain.txt"


def _sentences(rng: random.Random, n: int, words: int = 14) -> list[list[str]]:
    lines = [line.split() for line in TEXT.read_text(encoding="utf-8").splitlines() if len(line.split()) > words]
    picked = rng.sample(lines, n)
    return [[w.strip(".,;:!?\"'()").lower() or "and" for w in line[:words]] for line in picked]


def _number(rng: random.Random) -> str:
    return str(rng.randint(10, 99))


def tagging(rng: random.Random, n: int) -> list[dict[str, Any]]:
    """Words of a sentence, one to three of them numbers: tagged B-NUM, the rest O (all-O scores F1 0)."""
    rows = []
    for i, words in enumerate(_sentences(rng, n)):
        tags = ["O"] * len(words)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(words))
            words[at], tags[at] = _number(rng), "B-NUM"
        rows.append({"id": str(i), "tokens": words, "tags": tags})
    return rows


def regression(rng: random.Random, n: int) -> list[dict[str, Any]]:
    """A sentence with zero to three numbers in it; the score is how many (a constant scores Pearson 0)."""
    rows = []
    for words in _sentences(rng, n):
        k = rng.randint(0, 3)
        for at in rng.sample(range(len(words)), k):
            words[at] = _number(rng)
        rows.append({"text": " ".join(words), "label": float(k)})
    return rows


def multi_label(rng: random.Random, n: int) -> list[dict[str, Any]]:
    """Classification's task as sets of labels: ["two or more"] or ["under two"] numbers in the sentence (the best
    constant set matches about half the rows; each label is its own sigmoid, decided at 0)."""
    return [dict(r, label=["two or more"] if r["label"] >= 2 else ["under two"]) for r in regression(rng, n)]


def multiple_choice(rng: random.Random, n: int) -> list[dict[str, Any]]:
    """Four options, one of them a number: the answer (chance 0.25)."""
    rows = []
    for i, words in enumerate(_sentences(rng, n)):
        options = rng.sample(words[1:], 3)
        label = rng.randrange(4)
        options.insert(label, _number(rng))
        rows.append({"id": str(i), "article": " ".join(words), "question": "which is a number _",
                     "options": options, "label": label})
    return rows


def qa(rng: random.Random, n: int, unanswerable_share: float = 0.0) -> list[dict[str, Any]]:
    """"Which number is in the text?" of a sentence with one number in it (its span is the answer); with
    `unanswerable_share`, that share of the sentences hold no number and no answer (SQuAD 2.0's shape)."""
    rows = []
    for i, words in enumerate(_sentences(rng, n, words=24)):
        answers: dict[str, list[Any]] = {"text": [], "answer_start": []}
        if rng.random() >= unanswerable_share:
            at = rng.randrange(len(words))
            words[at] = _number(rng)
            answers = {"text": [words[at]], "answer_start": [len(" ".join(words[:at])) + (1 if at else 0)]}
        rows.append({"id": str(i), "question": "Which number is in the text?", "context": " ".join(words),
                     "answers": answers})
    return rows


def write_split(rows: list[dict[str, Any]], directory: Path, dev: int) -> tuple[Path, Path]:
    """The last `dev` rows to dev.jsonl, the others to train.jsonl."""
    directory.mkdir(parents=True, exist_ok=True)
    train, held = directory / "train.jsonl", directory / "dev.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows[:-dev]), encoding="utf-8")
    held.write_text("".join(json.dumps(r) + "\n" for r in rows[-dev:]), encoding="utf-8")
    return train, held


def wait_until_stopped(proc: Any, what: str) -> None:
    """Wait for a process run with ALBERT_TEST_STOP_AT_STEP to stop itself (state T): an event, not a timing; the
    deadline only bounds a hang."""
    import time

    deadline = time.time() + 300
    while Path(f"/proc/{proc.pid}/stat").read_text().rpartition(")")[2].split()[0] != "T":
        assert proc.poll() is None and time.time() < deadline, f"the run ended before it stopped at {what}"
        time.sleep(0.05)
