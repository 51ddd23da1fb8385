"""The fast paths keep the answers: bf16 and int8 agree with fp32 on ≥ 99% of top-1 fill-mask predictions
and classification labels, over real text (the committed public-domain fixture) and the embedded model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

import albert
from albert.inference.fast import freeze_bf16, quantize_int8

FIX = Path(__file__).parent / "fixtures"


def masked_sentences(n: int) -> list[str]:
    """One whole word (4+ letters) masked per line, deterministically."""
    out = []
    for line in (FIX / "public_domain.txt").read_text(encoding="utf-8").splitlines():
        words = [m for m in re.finditer(r"\b[a-zA-Z]{4,}\b", line[:300])]
        if len(words) < 3:
            continue
        w = words[len(out) % len(words)]
        out.append(line[:w.start()] + "[MASK]" + line[w.end():300])
        if len(out) == n:
            break
    return out


def top1(model: albert.AlbertForMaskedLM, tok: albert.AlbertTokenizer, texts: list[str],
         dtype: torch.dtype) -> list[int]:
    preds = []
    for i in range(0, len(texts), 16):
        batch = tok(texts[i:i + 16], padding=True, truncation=True, max_length=128, return_tensors="pt")
        with torch.inference_mode():
            logits = model(**batch).logits.float()
        mask = batch["input_ids"] == tok.mask_token_id
        preds.extend(logits[mask].argmax(-1).tolist())
    return preds


@pytest.fixture(scope="module")
def mlm() -> tuple[albert.AlbertForMaskedLM, albert.AlbertTokenizer]:
    return albert.AlbertForMaskedLM.from_pretrained("albert-small-en"), albert.AlbertTokenizer.from_pretrained(
        "albert-small-en")


def agreement(a: list[int], b: list[int]) -> float:
    assert len(a) == len(b) and a
    return sum(x == y for x, y in zip(a, b)) / len(a)


def test_fill_mask_bf16_and_int8_agree_with_fp32(mlm) -> None:
    model, tok = mlm
    texts = masked_sentences(300)
    ref = top1(model.float(), tok, texts, torch.float32)
    bf16 = top1(freeze_bf16(albert.AlbertForMaskedLM.from_pretrained("albert-small-en")), tok, texts, torch.bfloat16)
    int8 = top1(quantize_int8(albert.AlbertForMaskedLM.from_pretrained("albert-small-en")), tok, texts, torch.float32)
    assert agreement(ref, bf16) >= 0.99, agreement(ref, bf16)
    assert agreement(ref, int8) >= 0.99, agreement(ref, int8)


def test_classification_bf16_and_int8_agree_with_fp32(tmp_path: Path) -> None:
    from albert.tasks.finetune import FinetuneSettings, finetune

    lines = [x for x in (FIX / "public_domain.txt").read_text(encoding="utf-8").splitlines() if len(x) > 40]
    split = next(i for i, x in enumerate(lines) if x.startswith("Fellow-Citizens"))
    rows = [{"text": x[:200], "label": "moby" if i < split else "sotu"} for i, x in enumerate(lines)]
    train = rows[:100] + rows[split:split + 100]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    out = finetune(FinetuneSettings(task="classification", train=str(tmp_path / "train.jsonl"), model="albert-small-en",
                                    out=str(tmp_path / "clf"), max_seq_length=64, batch_size=16, max_steps=40,
                                    learning_rate=1e-4, precision="fp32", progress=False, num_threads=2))
    texts = [r["text"] for r in rows[100:split]][:150] + [r["text"] for r in rows[split + 100:]][:150]
    labels = {}
    for precision in ("fp32", "bf16", "int8"):
        clf = albert.pipeline("text-classification", model=out, precision=precision)
        labels[precision] = [r["label"] for r in clf(texts)]
    assert agreement(labels["fp32"], labels["bf16"]) >= 0.99
    assert agreement(labels["fp32"], labels["int8"]) >= 0.99
