"""Training an ALBERT SentencePiece vocabulary (`albert tokenizer train`): unigram, pad 0, unk 1, [CLS] [SEP]
[MASK] at 2-4, and the text normalised exactly as the tokenizer will see it."""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import unicodedata
from collections.abc import Iterator, Sequence
from pathlib import Path

import sentencepiece as spm

from albert.errors import DataError, InputError
from albert.io.output_dirs import check_new_output, claim_output
from albert.tokenization.tokenizer import VOCAB_FILE, AlbertTokenizer

logger = logging.getLogger(__name__)


def read_text_lines(paths: Sequence[str | Path], field: str = "text") -> Iterator[str]:
    """Lines of .txt files, or `field` of .jsonl / .parquet rows; .gz and .xz are decompressed on the fly."""
    from albert.io.files import iter_lines

    for path in paths:
        yield from iter_lines(path, field)


def train_tokenizer(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    vocab_size: int = 30000,
    character_coverage: float = 0.99995,
    max_sentences: int = 2_000_000,
    do_lower_case: bool = True,
    keep_accents: bool = False,
    seed: int = 0,
    progress: bool = True,
    field: str = "text",
) -> AlbertTokenizer:
    """Train an ALBERT SentencePiece vocabulary (unigram; pad 0, unk 1, [CLS] [SEP] [MASK] at 2–4).

    Text is normalised exactly as the tokenizer will see it (lowercased, accents stripped). On a big
    corpus, `max_sentences` lines are sampled uniformly (reservoir sampling, seeded) before training.
    """
    import random

    from tqdm import tqdm

    if vocab_size < 100:
        raise InputError(f"vocab_size must be at least 100, got {vocab_size}")
    # checked before reading the corpus (minutes on a big one): a directory of the user's (a vocabulary that shards
    # were made with, say) is never written into
    check_new_output(out_dir, "tokenizer train")
    normaliser = _Normaliser(do_lower_case, keep_accents)
    rng = random.Random(seed)
    sample: list[str] = []
    seen = 0
    for line in tqdm(read_text_lines(inputs, field), desc="reading", unit=" lines", disable=not progress):
        line = normaliser(line)
        if not line:
            continue
        seen += 1
        if len(sample) < max_sentences:
            sample.append(line)
        else:
            j = rng.randrange(seen)
            if j < max_sentences:
                sample[j] = line
    if not sample:
        raise DataError("no text found in " + ", ".join(map(str, inputs)))
    out_dir = Path(out_dir)
    logger.info("training a %d-piece vocabulary on %d of %d lines", vocab_size, len(sample), seen)
    with claim_output(out_dir, "tokenizer train") as staging:
        _train_vocabulary(sample, staging, vocab_size, character_coverage, do_lower_case, keep_accents)
    return AlbertTokenizer.from_pretrained(out_dir)


def _train_vocabulary(sample: list[str], out_dir: Path, vocab_size: int, character_coverage: float,
                      do_lower_case: bool, keep_accents: bool) -> AlbertTokenizer:
    model = io.BytesIO()  # written by Python below: SentencePiece's own writer ignores a full disk
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sample),
            model_writer=model,
            vocab_size=vocab_size,
            model_type="unigram",
            pad_id=0, unk_id=1, bos_id=-1, eos_id=-1,
            control_symbols=["[CLS]", "[SEP]", "[MASK]"],
            user_defined_symbols=["(", ")", '"', "-", ".", "–", "£", "€"],
            character_coverage=character_coverage,
            input_sentence_size=len(sample), shuffle_input_sentence=False,  # already sampled, seeded
            max_sentence_length=16384,
            num_threads=os.cpu_count() or 1,
            minloglevel=1,
        )
    except RuntimeError as e:
        raise InputError(f"SentencePiece training failed: {e}") from None
    (out_dir / VOCAB_FILE).write_bytes(model.getvalue())
    tok = AlbertTokenizer(out_dir / VOCAB_FILE, do_lower_case=do_lower_case, keep_accents=keep_accents)
    tok.save_pretrained(out_dir)
    return tok


@dataclasses.dataclass
class _Normaliser:
    do_lower_case: bool
    keep_accents: bool

    def __call__(self, line: str) -> str:
        line = " ".join(line.split())
        if not self.keep_accents and not line.isascii():
            line = "".join(c for c in unicodedata.normalize("NFKD", line) if not unicodedata.combining(c))
        return line.lower() if self.do_lower_case else line

