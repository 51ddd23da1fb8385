"""Texts drawn from raw text files for distillation: paragraphs of enough words, and one sentence of some of them as
a short text, in a seeded order."""

from __future__ import annotations

import numpy as np

from albert.errors import DataError
from albert.io.files import iter_documents


def _a_sentence(paragraph: str, rng: np.random.Generator) -> str:
    """One sentence of a paragraph (split at '. ', '? ', '! '), chosen at random among those of 4 words or more."""
    parts, start = [], 0
    for i, ch in enumerate(paragraph[:-1]):
        if ch in ".?!" and paragraph[i + 1] == " ":
            parts.append(paragraph[start:i + 1].strip())
            start = i + 2
    parts.append(paragraph[start:].strip())
    good = [p for p in parts if len(p.split()) >= 4]
    return good[int(rng.integers(len(good)))] if good else ""


def select_texts(paths: list[str], max_texts: int, short_share: float, seed: int, min_words: int = 8) -> list[str]:
    """Paragraphs of `min_words` words or more from the files' documents, and for `short_share` of them one sentence
    (queries are short, documents long); `max_texts` of them, drawn with `seed` from all, in a seeded order."""
    rng = np.random.default_rng([seed, 11])
    texts: list[str] = []
    for path in paths:
        for doc in iter_documents(path):
            for paragraph in doc:
                if len(paragraph.split()) < min_words:
                    continue
                texts.append(paragraph)
                if rng.random() < short_share:
                    sentence = _a_sentence(paragraph, rng)
                    if sentence and sentence != paragraph:
                        texts.append(sentence)
    if len(texts) < 2:
        raise DataError(f"{', '.join(paths)}: fewer than two paragraphs of {min_words} words or more")
    chosen = rng.permutation(len(texts))[:max_texts]
    return [texts[i] for i in chosen]
