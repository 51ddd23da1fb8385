"""Fill-mask on natural held-out sentences, one whole word masked: top-1 by words, not pieces.

    python bench/fill_mask_words.py --model NAME=DIR ... [--sentences 1000] [--out bench/results/fill_mask_words.json]

The sentences: real product reviews (`../shared/data/tasks/fine_foods_sentiment/dev.jsonl`), which are not in the
pretraining corpus: sentences of 8-40 words, one word of letters blanked, a fixed sample (seed 0). For each model the
blank becomes as many [MASK]s as the word has pieces in that model's vocabulary (so vocabularies that split a word
differently are compared on the same words), each [MASK] takes its most likely piece, and the pieces joined must
spell the word (case and accents aside). Reported: top-1 over all words, over one-piece words and over multi-piece
words, and the share of words that are one piece. The README's example sentence is never one of them.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import unicodedata
from pathlib import Path
from typing import Any

import torch

from albert.modeling.heads import AlbertForMaskedLM
from albert.runtime.kernels import cpu_description
from albert.tokenization.tokenizer import AlbertTokenizer

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = ROOT.parent / "shared" / "data" / "tasks" / "fine_foods_sentiment" / "dev.jsonl"
README_SENTENCE = "The whale swam through the [MASK] sea."  # never a sentence of this bench


def sentences(n: int) -> list[tuple[str, str]]:
    """(sentence with one "_", the word) pairs: sentences of 8-40 words from the reviews, one word of letters
    (not the first) blanked, chosen at random (seed 0)."""
    rng = random.Random(0)
    pairs = []
    for line in SENTENCES.read_text(encoding="utf-8").splitlines():
        for sentence in re.split(r"(?<=[.!?])\s+", json.loads(line)["text"].replace("<br />", " ")):
            words = sentence.split()
            candidates = [i for i, w in enumerate(words) if i and w.isalpha()]
            if 8 <= len(words) <= 40 and candidates:
                i = rng.choice(candidates)
                pairs.append((" ".join(words[:i] + ["_"] + words[i + 1:]), words[i]))
    pairs = [p for p in dict.fromkeys(pairs) if "whale" not in p[0]]
    rng.shuffle(pairs)
    return pairs[:n]


def _plain(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in text if not unicodedata.combining(c)).strip()


def score(model: AlbertForMaskedLM, tok: AlbertTokenizer, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    hits = {1: [0, 0], 2: [0, 0]}  # one piece / several: [right, all]
    for sentence, word in pairs:
        pieces = tok.encode_pieces([sentence.replace("_", word)])[0].ids
        alone = tok.encode_pieces([f"a {word}"])[0].ids[len(tok.encode_pieces(["a"])[0].ids):]
        n = max(1, len(alone))
        masked = sentence.replace("_", " ".join(["[MASK]"] * n))
        enc = tok(masked, return_tensors="pt")
        with torch.inference_mode():
            logits = model(**enc).logits[0]
        where = (enc["input_ids"][0] == tok.mask_token_id).nonzero().flatten()
        guess = tok.decode(logits[where].argmax(-1).tolist())
        kind = 1 if n == 1 else 2
        hits[kind][0] += _plain(guess) == _plain(word)
        hits[kind][1] += 1
        assert pieces  # (the sentence tokenizes)
    right, total = hits[1][0] + hits[2][0], hits[1][1] + hits[2][1]
    return {"top1": round(right / total, 4), "top1_one_piece": round(hits[1][0] / max(1, hits[1][1]), 4),
            "top1_multi_piece": round(hits[2][0] / max(1, hits[2][1]), 4),
            "one_piece_share": round(hits[1][1] / total, 4), "words": total}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", nargs="+", required=True, help="NAME=DIR (or a packaged model name)")
    p.add_argument("--tokenizer", nargs="*", default=[], help="NAME=DIR for a model directory without one")
    p.add_argument("--sentences", type=int, default=1000)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "fill_mask_words.json"))
    args = p.parse_args()
    torch.set_num_threads(2)
    pairs = sentences(args.sentences)
    assert README_SENTENCE.replace("[MASK]", "_") not in {s for s, _ in pairs}
    tokenizers = dict(t.split("=", 1) for t in args.tokenizer)
    report: dict[str, Any] = {"cpu": cpu_description(), "sentences": str(SENTENCES), "seed": 0, "results": {}}
    for spec in args.model:
        name, _, path = spec.partition("=")
        path = path or name
        tok = AlbertTokenizer.from_pretrained(tokenizers.get(name, path))
        model = AlbertForMaskedLM.from_pretrained(path).eval()
        report["results"][name] = score(model, tok, pairs)
        print(name, report["results"][name], flush=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
