"""fill-mask's answers: texts → padded batches of rows, logits at the [MASK] positions → ranked fillers.

Shared by both engines (PyTorch's pipeline and ONNX Runtime's); imports neither torch nor the model code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from albert.errors import InputError
from albert.tasks.batching import length_batches, pad_batch

if TYPE_CHECKING:
    from albert.tokenization.tokenizer import AlbertTokenizer

# (encoded, padded batch; each row's [MASK] positions, padded with 0) → (B, P, V) logits at those positions
Logits = Callable[[dict[str, list[list[int]]], list[list[int]]], np.ndarray]
BATCH_SIZE = 32  # texts per forward


def fill_mask(tokenizer: AlbertTokenizer, inputs: str | list[str], top_k: int, max_length: int,
              logits_of: Logits) -> Any:
    """Per [MASK] of each text, its top_k fillers as transformers' fill-mask pipeline lists them; one text with
    one mask gives a flat list. Several texts run in batches of similar length, within the token budget of every
    model call (albert.tasks.batching)."""
    texts = [inputs] if isinstance(inputs, str) else list(inputs)
    if top_k < 1:
        raise InputError(f"top_k must be >= 1, got {top_k}")
    tok = tokenizer
    rows = tok(texts, truncation=True, max_length=max_length)
    masks = [[i for i, t in enumerate(ids) if t == tok.mask_token_id] for ids in rows["input_ids"]]
    for n, (text, positions) in enumerate(zip(texts, masks), 1):
        if positions:
            continue
        shown = text if len(text) <= 80 else text[:60] + " ... " + text[-15:]
        if "[MASK]" in text:  # only past the truncated start (the whole text is never tokenized)
            raise InputError(f"input {n}: its [MASK] is past the model's {max_length}-token limit (shorten the text "
                             f"before the mask): {shown!r}")
        raise InputError(f"no [MASK] in input {n}: {shown!r}")
    results: list[Any] = [None] * len(texts)
    for idx, length in length_batches([len(ids) for ids in rows["input_ids"]], max_length, BATCH_SIZE):
        P = max(len(masks[i]) for i in idx)
        batch = pad_batch([rows["input_ids"][i] for i in idx], [rows["token_type_ids"][i] for i in idx],
                          tok.pad_token_id, length)
        logits = np.asarray(logits_of(batch, [masks[i] + [0] * (P - len(masks[i])) for i in idx]), dtype=np.float32)
        for b, i in enumerate(idx):
            results[i] = _fillers(tok, rows["input_ids"][i], masks[i], logits[b], top_k)
    return results[0] if isinstance(inputs, str) else results


def check_fillers(texts: list[str], top_k: int, limit: int, who: str = "") -> None:
    """An InputError, before any work, when the texts' [MASK]s × top_k exceed `limit` (the server: a request's
    texts together; the CLI: each text alone, `who` naming it): each filler is a sentence rebuilt and decoded, so a
    short request with many masks and a large top_k would otherwise hold the model's thread for seconds and answer
    megabytes. A [MASK] is the exact string (a lowercased "[mask]" is text), as the tokenizer reads it."""
    if limit < 1:
        raise InputError(f"--max-fillers must be >= 1, got {limit}")
    masks = sum(text.count("[MASK]") for text in texts)
    if masks * top_k > limit:
        who = who or ("one text" if len(texts) == 1 else "the request")
        raise InputError(f"{who} asks for {masks:,} [MASK]s × top_k {top_k:,} = {masks * top_k:,} fillers; at most "
                         f"{limit:,} (--max-fillers)")


def _fillers(tok: AlbertTokenizer, ids: list[int], positions: list[int], logits: np.ndarray, top_k: int) -> Any:
    """`logits` (P, V): row j for the j-th [MASK], at `positions[j]` of `ids`."""
    special = np.asarray(tok.all_special_ids)
    dropped = {tok.cls_token_id, tok.sep_token_id, tok.pad_token_id}
    results = []
    for j, pos in enumerate(positions):
        # scores are the model's probabilities over the whole vocabulary (as transformers reports them);
        # special tokens ([CLS], <pad>, [MASK], ...) are just never proposed
        row = logits[j] - logits[j].max()
        probs = np.exp(row)
        probs /= probs.sum()
        ranked = probs.copy()
        ranked[special] = -1.0
        k = min(top_k, probs.size - len(special))
        top = np.argpartition(-ranked, k - 1)[:k]
        top = top[np.argsort(-ranked[top], kind="stable")]
        group = []
        for t in top.tolist():
            filled = list(ids)
            filled[pos] = t
            keep = [x for x in filled if x not in dropped]
            group.append({"score": float(probs[t]), "token": t, "token_str": tok.decode([t]),
                          "sequence": tok.decode(keep)})
        results.append(group)
    return results[0] if len(results) == 1 else results
