"""The ALBERT SentencePiece tokenizer: ALBERT's exact preprocessing, offsets into the original text,
and a fast batch path (training a vocabulary: albert.tokenization.vocabulary).

The reference semantics are transformers 4.x's sentencepiece-based ("slow") `AlbertTokenizer`:
1. outside special tokens, each character is lowercased (do_lower_case);
2. the text is split on special tokens (`[MASK]` also swallows the whitespace before it);
3. each piece of text: collapse whitespace, `` and '' → ", NFKD and drop combining marks, lowercase;
4. SentencePiece, then the digit-comma fix ("92000," → ▁9 2000 ,).
"""

from __future__ import annotations

import json
import logging
import os
import re
import unicodedata
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import sentencepiece as spm

from albert.errors import CheckpointError, InputError
from albert.tokenization.encoding import (
    BatchEncoding,
    Encoded,
    Padding,
    Truncation,
    batch_encoding,
    pad_rows,
    texts_and_pairs,
    truncation_strategy,
    windows,
    word_bounded_spans,
)
from albert.tokenization.specials import (
    SPECIAL_RE,
    SPECIAL_TOKENS,
    lower_outside_specials,
    lowercase_owner,
    split_specials,
)
from albert.tokenization.tokenizer_json import SPIECE_UNDERLINE

logger = logging.getLogger(__name__)

VOCAB_FILE = "spiece.model"
TOKENIZER_JSON = "tokenizer.json"
# The digit-comma fix only concerns pieces like "▁92000," (see _fix_digit_comma).
_DIGIT_COMMA_RE = re.compile(r"\d,$")

def _strip_combining(text: str) -> str:
    """`text` without its combining marks (non-zero canonical combining class), as ALBERT strips accents.

    Only the distinct characters of the text are looked at: most non-ASCII text (curly quotes, dashes) has no
    combining mark at all, and then nothing is rebuilt (faster than one regex over every character:
    docs/kernel-notes.md). Not memoised: its arguments are whole texts, which a cache kept for the life of the
    process (3,000 texts of ~300 characters: 4.5 MB held; a server's memory grew with every text it tokenized)."""
    if text.isascii():
        return text
    drop = {ord(c): None for c in set(text) if unicodedata.combining(c)}
    return text.translate(drop) if drop else text



class AlbertTokenizer:
    model_max_length = 512

    def __init__(self, vocab_file: str | Path | None = None, do_lower_case: bool = True, remove_space: bool = True,
                 keep_accents: bool = False, model_proto: bytes | None = None) -> None:
        """From a spiece.model file, or from a serialized SentencePiece model (`model_proto`: a tokenizer.json's,
        converted by albert.tokenization.tokenizer_json)."""
        self.vocab_file = Path(vocab_file) if vocab_file is not None else None
        self.do_lower_case = do_lower_case
        self.remove_space = remove_space
        self.keep_accents = keep_accents
        if model_proto is None:
            if self.vocab_file is None or not self.vocab_file.is_file():
                raise CheckpointError(f"SentencePiece model not found: {self.vocab_file}")
            model_proto = self.vocab_file.read_bytes()
        self.model_proto = model_proto
        source = self.vocab_file or "the tokenizer.json's model"
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.LoadFromSerializedProto(model_proto)
        except (OSError, RuntimeError) as e:
            raise CheckpointError(f"{source} is not a valid SentencePiece model ({e})") from None
        for attr, token in SPECIAL_TOKENS.items():
            setattr(self, attr, token)
            token_id = self.sp.piece_to_id(token)
            if self.sp.id_to_piece(token_id) != token:
                raise CheckpointError(f"{source} has no {token} piece; an ALBERT vocabulary needs "
                                     f"{', '.join(SPECIAL_TOKENS.values())}")
            setattr(self, attr + "_id", token_id)
        self.pad_token_id: int
        self.unk_token_id: int
        self.cls_token_id: int
        self.sep_token_id: int
        self.mask_token_id: int
        self.all_special_ids = sorted(self.sp.piece_to_id(t) for t in SPECIAL_TOKENS.values())
        self.all_special_tokens = list(SPECIAL_TOKENS.values())
        self._special_by_text = {t: self.sp.piece_to_id(t) for t in SPECIAL_TOKENS.values()}
        self._bare_underline = self.sp.piece_to_id(SPIECE_UNDERLINE)
        # Ids of pieces the digit-comma fix re-encodes: precomputed so the batch path can skip most texts.
        self._digit_comma_ids = frozenset(
            i for i in range(self.sp.get_piece_size())
            if len(p := self.sp.id_to_piece(i)) > 1 and _DIGIT_COMMA_RE.search(p)
        )

    # ----- loading and saving -----
    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, **kwargs: Any) -> AlbertTokenizer:
        """A `.model` file, a directory with `spiece.model` (ours or transformers') or only a `tokenizer.json`
        (transformers 5 saves just that), or a model name/hub id."""
        path = Path(name_or_path).expanduser()
        if path.is_file():
            return cls(path, **kwargs)
        if not path.is_dir():
            from albert.io.hub import resolve_model_dir

            path = resolve_model_dir(name_or_path)
        from albert.io.files import read_model_json

        settings: dict[str, Any] = {}
        vocab, fast = path / VOCAB_FILE, path / TOKENIZER_JSON
        proto = None
        if not vocab.is_file():
            if not fast.is_file():
                raise CheckpointError(f"no {VOCAB_FILE} or {TOKENIZER_JSON} in {path}")
            from albert.tokenization.tokenizer_json import spm_from_tokenizer_json

            proto, settings = spm_from_tokenizer_json(read_model_json(fast), str(fast))
        config_file = path / "tokenizer_config.json"
        if config_file.exists():
            config = read_model_json(config_file)
            if isinstance(config, dict):
                settings |= {k: config[k] for k in ("do_lower_case", "remove_space", "keep_accents")
                             if isinstance(config.get(k), bool)}
        return cls(vocab if proto is None else None, **{**settings, **kwargs}, model_proto=proto)

    def save_pretrained(self, directory: str | Path) -> None:
        """Write spiece.model and tokenizer.json (transformers 4 reads the first, 5 the second) and the configs."""
        from albert.tokenization.tokenizer_json import tokenizer_json_from_spm

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.vocab_file is None or self.vocab_file.resolve() != (directory / VOCAB_FILE).resolve():
            (directory / VOCAB_FILE).write_bytes(self.model_proto)
        fast = tokenizer_json_from_spm(self.model_proto, self.do_lower_case, self.keep_accents)
        (directory / TOKENIZER_JSON).write_text(json.dumps(fast, ensure_ascii=False) + "\n", encoding="utf-8")
        mask = {"content": "[MASK]", "lstrip": True, "rstrip": False, "normalized": False, "single_word": False,
                "special": True}
        config = {
            "tokenizer_class": "AlbertTokenizer", "do_lower_case": self.do_lower_case,
            "remove_space": self.remove_space, "keep_accents": self.keep_accents,
            "bos_token": "[CLS]", "eos_token": "[SEP]", "unk_token": "<unk>", "sep_token": "[SEP]",
            "pad_token": "<pad>", "cls_token": "[CLS]", "mask_token": mask,
            "model_max_length": self.model_max_length,
        }
        (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        special = {"bos_token": "[CLS]", "eos_token": "[SEP]", "unk_token": "<unk>", "sep_token": "[SEP]",
                   "pad_token": "<pad>", "cls_token": "[CLS]", "mask_token": mask}
        (directory / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n", encoding="utf-8")

    # ----- vocabulary -----
    @property
    def vocab_size(self) -> int:
        return int(self.sp.get_piece_size())

    def __len__(self) -> int:
        return self.vocab_size

    def get_vocab(self) -> dict[str, int]:
        return {self.sp.id_to_piece(i): i for i in range(self.vocab_size)}

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> Any:
        if isinstance(tokens, str):
            return int(self.sp.piece_to_id(tokens))
        return [int(self.sp.piece_to_id(t)) for t in tokens]

    def convert_ids_to_tokens(self, ids: int | Sequence[int], skip_special_tokens: bool = False) -> Any:
        if isinstance(ids, int):
            return self.sp.id_to_piece(ids)
        return [self.sp.id_to_piece(int(i)) for i in ids
                if not (skip_special_tokens and int(i) in self.all_special_ids)]

    # ----- normalisation -----
    def preprocess_text(self, text: str) -> str:
        """ALBERT's normalisation of one special-token-free piece of text (fast, no offsets)."""
        if self.remove_space:
            text = " ".join(text.split())
        text = text.replace("``", '"').replace("''", '"')
        if not self.keep_accents and not text.isascii():
            text = _strip_combining(unicodedata.normalize("NFKD", text))
        if self.do_lower_case:
            text = text.lower()
        return text

    def _preprocess_with_map(self, text: str, base: int) -> tuple[str, list[int], list[int]]:
        """`preprocess_text`, also giving for each output character its [start, end) in the original string."""
        chars: list[tuple[str, int, int]] = [(c, base + i, base + i + 1) for i, c in enumerate(text)]
        if self.remove_space:
            out: list[tuple[str, int, int]] = []
            for c, s, e in chars:
                if c.isspace():
                    if out and out[-1][0] == " " and out[-1][2] == -1:
                        continue
                    out.append((" ", s, -1))  # -1 marks "inside a whitespace run"
                else:
                    out.append((c, s, e))
            while out and out[0][2] == -1:
                out.pop(0)
            while out and out[-1][2] == -1:
                out.pop()
            chars = [(c, s, s + 1 if e == -1 else e) for c, s, e in out]
        merged: list[tuple[str, int, int]] = []
        for item in chars:  # `` and '' → " (left to right, as str.replace does)
            if merged and merged[-1][0] == item[0] and item[0] in "`'":
                prev = merged.pop()
                merged.append(('"', prev[1], item[2]))
                continue
            merged.append(item)
        chars = merged
        if not self.keep_accents:
            chars = [(d, s, e) for c, s, e in chars for d in unicodedata.normalize("NFKD", c)
                     if not unicodedata.combining(d)]
        if self.do_lower_case:
            chars = [(d, s, e) for c, s, e in chars for d in c.lower()]
        return "".join(c for c, _, _ in chars), [s for _, s, _ in chars], [e for _, _, e in chars]

    # ----- encoding -----
    def _fix_digit_comma(self, piece: str) -> list[int]:
        """"▁92000," → ▁9 2000 , : re-encode the piece without its comma, then the comma alone."""
        sub = self.sp.encode(piece[:-1].replace(SPIECE_UNDERLINE, ""), out_type=str)
        if piece[0] != SPIECE_UNDERLINE and sub and sub[0][0] == SPIECE_UNDERLINE:
            sub = sub[1:] if len(sub[0]) == 1 else [sub[0][1:], *sub[1:]]
        return [self.sp.piece_to_id(p) for p in [*sub, piece[-1]]]

    def _encode_chunk_with_offsets(self, chunk: str, base: int) -> Encoded:
        norm, starts, ends = self._preprocess_with_map(chunk, base)
        if not norm:
            return Encoded([], [])
        proto = self.sp.encode(norm, return_type="proto")
        # byte offset → character index in `norm`
        byte_to_char: list[int] = []
        for i, c in enumerate(norm):
            byte_to_char.extend([i] * len(c.encode("utf-8")))
        byte_to_char.append(len(norm))
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        for p in proto.pieces:
            b, e = byte_to_char[p.begin], byte_to_char[p.end]
            vis = b
            while vis < e and norm[vis] == " ":  # a span covers the token's visible characters
                vis += 1
            if vis < e:
                b = vis
            span = (starts[b], ends[e - 1]) if e > b else ((starts[b], starts[b]) if b < len(norm) else
                                                          (ends[-1], ends[-1]))
            if len(p.piece) > 1 and _DIGIT_COMMA_RE.search(p.piece):
                fixed = self._fix_digit_comma(p.piece)
                # the comma is the last character; the re-encoded pieces share the rest of the span
                comma = (starts[e - 1], ends[e - 1])
                ids.extend(fixed)
                offsets.extend([(span[0], comma[0])] * (len(fixed) - 1) + [comma])
            else:
                ids.append(p.id)
                offsets.append(span)
        return Encoded(ids, offsets)

    def _opening_space(self, enc: Encoded, start: int, later: bool) -> Encoded:
        """A part that starts at `start`: a lone "▁" opening a later part spans the whitespace it stands for, as it
        does inside the whole text (the part's own encoding, having stripped that whitespace, gives it no span)."""
        if later and enc.ids and enc.ids[0] == self._bare_underline and enc.offsets[0][0] == enc.offsets[0][1]:
            enc.offsets[0] = (start, start + 1)
        return enc

    def encode_parts(self, text: str, part_chars: int = 1 << 16) -> Iterator[Encoded]:
        """`encode_pieces([text], with_offsets=True)[0]` in word-bounded parts of about `part_chars` characters,
        offsets in `text`: the caller of a long text works between parts (the server's model thread answers other
        requests) and holds no list of a million offset pairs."""
        for a, b in word_bounded_spans(text, part_chars):
            enc = self.encode_pieces([text[a:b]], with_offsets=True)[0]
            yield self._opening_space(Encoded(enc.ids, [(s + a, e + a) for s, e in enc.offsets]), a, a > 0)

    def encode_pieces(self, texts: Sequence[str], with_offsets: bool = False, num_threads: int = -1) -> list[Encoded]:
        """Token ids (no special tokens added) for each text, the fast batch path unless offsets are asked."""
        results: list[Encoded | None] = [None] * len(texts)
        plain: list[int] = []
        plain_texts: list[str] = []
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InputError(f"expected a string, got {type(text).__name__}")
            lowered = lower_outside_specials(text) if self.do_lower_case else text
            if with_offsets or ("[" in lowered or "<" in lowered) and SPECIAL_RE.search(lowered):
                results[i] = self._encode_with_specials(text, lowered, with_offsets)
            else:
                plain.append(i)
                plain_texts.append(self.preprocess_text(lowered))
        if plain_texts:
            threads = (os.cpu_count() or 1) if num_threads < 0 else num_threads
            parts = [(i, text[a:b]) for i, text in zip(plain, plain_texts) for a, b in word_bounded_spans(text)]
            joined: dict[int, list[int]] = {i: [] for i in plain}
            for (i, _), ids in zip(parts, self.sp.encode([p for _, p in parts], out_type=int, num_threads=threads)):
                joined[i].extend(ids)
            for i, ids in joined.items():
                if not self._digit_comma_ids.isdisjoint(ids):
                    ids = self._apply_digit_comma(ids)
                results[i] = Encoded(ids, [])
        return results  # type: ignore[return-value]

    def _apply_digit_comma(self, ids: list[int]) -> list[int]:
        out: list[int] = []
        for i in ids:
            if i in self._digit_comma_ids:
                out.extend(self._fix_digit_comma(self.sp.id_to_piece(i)))
            else:
                out.append(i)
        return out

    def _encode_with_specials(self, original: str, lowered: str, with_offsets: bool) -> Encoded:
        """Split the lowercased text on special tokens (as transformers does) and encode each piece;
        offsets are mapped back to `original`, also where lowercasing changed the length ('İ' → 'i̇')."""
        owner = None if len(lowered) == len(original) else lowercase_owner(original)
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        for chunk, start, special in split_specials(lowered):
            if special:
                ids.append(self._special_by_text[chunk])
                offsets.append((start, start + len(chunk)))
            elif with_offsets:
                for a, b in word_bounded_spans(chunk):
                    enc = self._opening_space(self._encode_chunk_with_offsets(chunk[a:b], start + a), start + a, a > 0)
                    ids.extend(enc.ids)
                    offsets.extend(enc.offsets)
            else:
                pre = self.preprocess_text(chunk)
                for a, b in word_bounded_spans(pre):
                    ids.extend(self._apply_digit_comma(self.sp.encode(pre[a:b], out_type=int)))
        if owner is not None and offsets:
            owner.append(len(original))
            offsets = [(owner[s], owner[e - 1] + 1 if e > s else owner[s]) for s, e in offsets]
        return Encoded(ids, offsets)

    def tokenize(self, text: str) -> list[str]:
        """Pieces as strings; an unknown piece keeps its surface text (as transformers' tokenize does)."""
        lowered = lower_outside_specials(text) if self.do_lower_case else text
        pieces: list[str] = []
        for chunk, _, special in split_specials(lowered):
            if special:
                pieces.append(chunk)
                continue
            for piece in self.sp.encode(self.preprocess_text(chunk), out_type=str):
                if len(piece) > 1 and _DIGIT_COMMA_RE.search(piece):
                    pieces.extend(self.sp.id_to_piece(i) for i in self._fix_digit_comma(piece))
                else:
                    pieces.append(piece)
        return pieces

    def encode(self, text: str, text_pair: str | None = None, add_special_tokens: bool = True,
               **kwargs: Any) -> list[int]:
        return self(text, text_pair, add_special_tokens=add_special_tokens, **kwargs)["input_ids"]

    def build_inputs(self, a: list[int], b: list[int] | None) -> tuple[list[int], list[int], list[int]]:
        """[CLS] A [SEP] (B [SEP]) → ids, token types, special-token mask."""
        ids = [self.cls_token_id, *a, self.sep_token_id]
        types = [0] * len(ids)
        special = [1] + [0] * len(a) + [1]
        if b is not None:
            ids += [*b, self.sep_token_id]
            types += [1] * (len(b) + 1)
            special += [0] * len(b) + [1]
        return ids, types, special

    def _enough_of_each(self, texts: list[str] | None, n: int) -> Any:
        """What truncation to n tokens keeps is at a text's start: each text is read only as far as it must be, so
        that a 200 MB line costs what a model-length text costs."""
        return None if texts is None else [self._enough_of(t, n) for t in texts]

    def _enough_of(self, text: str, n: int) -> str:
        """The shortest start of `text`, cut before a whitespace, that still has more than `n` tokens (so that
        truncating it to n gives what truncating the whole text gives: no piece spans a whitespace), or the whole
        text. Tried on a start of 8 characters per token, then four times longer, and so on."""
        limit = 8 * n + 64
        while isinstance(text, str) and limit < len(text):
            cut = max(text.rfind(c, 0, limit) for c in " \t\n\r")
            start = text[:cut if cut > 0 else limit]
            if len(self.encode_pieces([start])[0].ids) > n:
                return start
            limit *= 4
        return text

    def __call__(
        self,
        text: str | Sequence[str],
        text_pair: str | Sequence[str] | None = None,
        add_special_tokens: bool = True,
        max_length: int | None = None,
        truncation: Truncation = False,
        padding: Padding = False,
        stride: int = 0,
        return_overflowing_tokens: bool = False,
        return_offsets_mapping: bool = False,
        return_special_tokens_mask: bool = False,
        return_token_type_ids: bool = True,
        return_attention_mask: bool = True,
        return_tensors: Literal["pt", "np"] | None = None,
    ) -> BatchEncoding:
        """transformers' tokenizer call: one text or a list (and their pairs) → model inputs, truncated, windowed
        (`return_overflowing_tokens` with `stride`), padded and as lists, NumPy arrays or torch tensors."""
        texts, pairs, single = texts_and_pairs(text, text_pair)
        strategy = truncation_strategy(truncation)
        if strategy != "do_not_truncate" and max_length is None:
            max_length = self.model_max_length
        if return_overflowing_tokens and strategy == "do_not_truncate":
            raise InputError("return_overflowing_tokens needs truncation")
        if strategy != "do_not_truncate" and not return_overflowing_tokens and max_length:
            texts, pairs = self._enough_of_each(texts, max_length), self._enough_of_each(pairs, max_length)
        first = self.encode_pieces(texts, return_offsets_mapping)
        second = self.encode_pieces(pairs, return_offsets_mapping) if pairs is not None else None
        fields = {name for name, wanted in (("token_type_ids", return_token_type_ids),
                                            ("attention_mask", return_attention_mask),
                                            ("special_tokens_mask", return_special_tokens_mask),
                                            ("offset_mapping", return_offsets_mapping)) if wanted}
        rows: list[dict[str, list[Any]]] = []
        sample_map: list[int] = []
        for n, a in enumerate(first):
            b = second[n] if second is not None else None
            for wa, wb in windows(a, b, strategy, max_length, stride, add_special_tokens, return_overflowing_tokens):
                rows.append(self._row(wa, wb, add_special_tokens, fields))
                sample_map.append(n)
        pad_rows(rows, padding, max_length, self.pad_token_id)
        return batch_encoding(rows, sample_map if return_overflowing_tokens else None, return_tensors, single)

    def _row(self, a: Encoded, b: Encoded | None, specials: bool, fields: set[str]) -> dict[str, list[Any]]:
        """One sequence's model inputs, with the `fields` asked for beside its ids. An empty second text is still a
        pair: [CLS] A [SEP] [SEP], the last [SEP] in segment 1 (as transformers encodes it); `b` is None only
        without a pair."""
        if specials:
            ids, types, special = self.build_inputs(a.ids, b.ids if b is not None else None)
            offsets = [(0, 0), *a.offsets, (0, 0)] + ([*b.offsets, (0, 0)] if b is not None else [])
        else:
            ids = a.ids + (b.ids if b is not None else [])
            types = [0] * len(a.ids) + [1] * (len(b.ids) if b is not None else 0)
            special = [0] * len(ids)
            offsets = a.offsets + (b.offsets if b is not None else [])
        every: dict[str, list[Any]] = {"token_type_ids": types, "attention_mask": [1] * len(ids),
                                       "special_tokens_mask": special, "offset_mapping": offsets}
        return {"input_ids": ids} | {k: v for k, v in every.items() if k in fields}

    # ----- decoding -----
    def convert_tokens_to_string(self, tokens: Sequence[str]) -> str:
        out, prev_special = "", False
        run: list[str] = []
        for t in tokens:
            if t in self._special_by_text:
                if not prev_special:
                    out += " "
                out += self.sp.decode_pieces(run) + t
                run, prev_special = [], True
            else:
                run.append(t)
                prev_special = False
        out += self.sp.decode_pieces(run)
        return out.strip()

    def decode(self, ids: Sequence[int] | Any, skip_special_tokens: bool = False) -> str:
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        return self.convert_tokens_to_string(self.convert_ids_to_tokens(list(ids), skip_special_tokens))

    def batch_decode(self, batch: Sequence[Sequence[int]], skip_special_tokens: bool = False) -> list[str]:
        return [self.decode(ids, skip_special_tokens) for ids in batch]


