"""Special tokens inside raw text, as transformers treats them: lowercasing around them, splitting on them, and
mapping lowercased characters back to the original's."""

from __future__ import annotations

import re

SPECIAL_TOKENS = {"pad_token": "<pad>", "unk_token": "<unk>", "cls_token": "[CLS]", "sep_token": "[SEP]",
                  "mask_token": "[MASK]"}
SPECIAL_RE = re.compile("(" + "|".join(re.escape(t) for t in SPECIAL_TOKENS.values()) + ")")


def lower_outside_specials(text: str) -> str:
    """`text` lowercased except its special tokens ("[MASK]" stays; "[mask]" is text)."""
    # transformers lowercases one character at a time, skipping special tokens. Python's whole-string
    # lower() differs from that only through the final-sigma rule, so per character only if Σ occurs.
    if "[" not in text and "<" not in text:
        return text.lower() if "Σ" not in text else "".join(c.lower() for c in text)
    parts = SPECIAL_RE.split(text)
    return "".join(p if i % 2 else p.lower() if "Σ" not in p else "".join(c.lower() for c in p)
                   for i, p in enumerate(parts))


def split_specials(text: str) -> list[tuple[str, int, bool]]:
    """(chunk, start in text, is_special); `[MASK]` strips the whitespace to its left."""
    chunks: list[tuple[str, int, bool]] = []
    pos = 0
    for m in SPECIAL_RE.finditer(text):
        left = text[pos:m.start()]
        if m.group() == "[MASK]":
            left = left.rstrip()
        if left:
            chunks.append((left, pos, False))
        chunks.append((m.group(), m.start(), True))
        pos = m.end()
    if pos < len(text):
        chunks.append((text[pos:], pos, False))
    return chunks


def lowercase_owner(original: str) -> list[int]:
    """For each character of `lower_outside_specials(original)`, its index in `original`."""
    owner: list[int] = []
    pos = 0
    for i, part in enumerate(SPECIAL_RE.split(original)):
        if i % 2:
            owner.extend(range(pos, pos + len(part)))
        else:
            owner.extend(pos + j for j, c in enumerate(part) for _ in c.lower())
        pos += len(part)
    return owner
