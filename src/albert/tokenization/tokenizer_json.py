"""tokenizer.json (Hugging Face tokenizers, Unigram) ⇄ spiece.model (SentencePiece): the conversion as data.

transformers 5 saves an ALBERT tokenizer as tokenizer.json alone; albert's tokenizer is SentencePiece with
ALBERT's preprocessing. Both hold the same things — the pieces and their scores, the special and the
user-defined pieces, the normalisation (NFKD + accent stripping + lowercasing, then SentencePiece's
precompiled NFKC character map) — so one can be written from the other exactly:

| spiece.model                                   | tokenizer.json                                            |
|------------------------------------------------|-----------------------------------------------------------|
| pieces (piece, score, type NORMAL)             | model.vocab [piece, score]                                |
| a digit-comma piece ("▁30,")                   | its score − 100: ALBERT's digit-comma split, as a penalty  |
| type CONTROL / UNKNOWN                         | added_tokens, special                                     |
| type USER_DEFINED                              | read: added_tokens not special; written: vocab entries    |
| normalizer_spec.precompiled_charsmap           | normalizer Precompiled (base64)                           |
| do_lower_case / keep_accents (tokenizer_config)| normalizer Lowercase / NFKD + StripAccents                |
| add_dummy_prefix, escape_whitespaces           | Metaspace "▁", prepend_scheme "always"                    |

The layout written is transformers' own AlbertConverter's but for one thing: user-defined pieces (albert's own
vocabularies define ( ) " - . – £ €) stay plain vocabulary entries instead of added tokens. tokenizers splits the
text at added tokens before segmenting it, which SentencePiece does not ("(big)": ▁ ( big ) there, ( ▁big ) with
the split); as vocabulary entries of score 0 they segment as SentencePiece segments them, so transformers 5
reading albert's tokenizer.json gives albert's ids (tests/test_interop.py: every fixture line).
"""

from __future__ import annotations

import base64
import re
from typing import Any

from albert.errors import CheckpointError

SPIECE_UNDERLINE = "\u2581"
DIGIT_COMMA_PENALTY = 100.0  # transformers' AlbertConverter lowers these pieces' scores by this much
_DIGIT_COMMA = re.compile(r"\d,$")
# SentencePiece's piece types
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED = 1, 2, 3, 4, 5
SPECIAL = ("<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]")


def sentencepiece_proto() -> Any:
    from sentencepiece import sentencepiece_model_pb2

    return sentencepiece_model_pb2


def _digit_comma(piece: str) -> bool:
    return len(piece) > 1 and bool(_DIGIT_COMMA.search(piece))


# ----- tokenizer.json → spiece.model -----
def spm_from_tokenizer_json(doc: Any, where: str = "tokenizer.json") -> tuple[bytes, dict[str, bool]]:
    """(a serialized SentencePiece ModelProto, {do_lower_case, keep_accents}) equal to the tokenizer.json's."""
    vocab, added, unk_id = _checked_unigram(doc, where)
    steps = _normalizers(doc.get("normalizer"))
    kinds = [s.get("type") for s in steps]
    charsmap = next((s.get("precompiled_charsmap") for s in steps if s.get("type") == "Precompiled"), None)
    pb = sentencepiece_proto()
    proto = pb.ModelProto()
    for i, (piece, score) in enumerate(vocab):
        entry = proto.pieces.add()
        entry.piece = piece
        token = added.get(i)
        if i == unk_id:
            entry.type = UNKNOWN
        elif token is not None and token.get("special"):
            entry.type = CONTROL
        elif token is not None:
            entry.type = USER_DEFINED
        else:
            entry.type = NORMAL
        # undo the converter's digit-comma penalty: albert splits those pieces itself, as ALBERT's code does
        entry.score = float(score) + (DIGIT_COMMA_PENALTY if _digit_comma(piece) and score < -DIGIT_COMMA_PENALTY / 2
                                      else 0.0)
        if entry.type != NORMAL:
            entry.score = 0.0
    spec = proto.trainer_spec
    spec.model_type = 1  # UNIGRAM
    spec.vocab_size = len(vocab)
    spec.unk_id = unk_id if isinstance(unk_id, int) else -1
    spec.pad_id = next((i for i, (p, _) in enumerate(vocab) if p == "<pad>"), -1)
    spec.bos_id = spec.eos_id = -1
    spec.unk_piece = vocab[spec.unk_id][0] if spec.unk_id >= 0 else "<unk>"
    spec.user_defined_symbols.extend(p.piece for p in proto.pieces if p.type == USER_DEFINED)
    spec.control_symbols.extend(p.piece for p in proto.pieces if p.type == CONTROL and p.piece != "<pad>")
    norm = proto.normalizer_spec
    if charsmap:
        norm.name = "nmt_nfkc"
        norm.precompiled_charsmap = base64.b64decode(charsmap)
    else:  # nothing beyond ALBERT's own preprocessing (which albert applies before SentencePiece)
        norm.name = "identity"
    norm.add_dummy_prefix = _prepends(doc.get("pre_tokenizer"))
    norm.remove_extra_whitespaces = True
    norm.escape_whitespaces = True
    settings = {"do_lower_case": "Lowercase" in kinds, "keep_accents": "StripAccents" not in kinds}
    return proto.SerializeToString(), settings


def _checked_unigram(doc: Any, where: str) -> tuple[list[list[Any]], dict[int, dict[str, Any]], int | None]:
    """A tokenizer.json's Unigram model checked field by field: (its [piece, score] list, its added tokens by id,
    its unknown piece's id); each fault one line naming the file."""
    if not isinstance(doc, dict) or not isinstance(doc.get("model"), dict):
        raise CheckpointError(f"{where}: not a tokenizers file (no 'model')")
    model = doc["model"]
    if model.get("type") != "Unigram":
        raise CheckpointError(f"{where}: a {model.get('type')} model; ALBERT's tokenizer is a Unigram (SentencePiece) "
                              "model")
    vocab = model.get("vocab")
    if not isinstance(vocab, list) or not all(isinstance(v, list) and len(v) == 2 and isinstance(v[0], str)
                                              and isinstance(v[1], (int, float)) for v in vocab):
        raise CheckpointError(f"{where}: model.vocab must be a list of [piece, score]")
    if not vocab:
        raise CheckpointError(f"{where}: model.vocab is empty")
    listed = doc.get("added_tokens") or []
    if not isinstance(listed, list) or not all(isinstance(t, dict) and isinstance(t.get("id"), int)
                                               and not isinstance(t.get("id"), bool) for t in listed):
        raise CheckpointError(f"{where}: added_tokens must be a list of objects with an integer id")
    unk_id = model.get("unk_id")
    if unk_id is not None and (not isinstance(unk_id, int) or isinstance(unk_id, bool)
                               or not 0 <= unk_id < len(vocab)):
        raise CheckpointError(f"{where}: model.unk_id must be the id of a piece (0 to {len(vocab) - 1}) or null, "
                              f"got {unk_id!r}")
    return vocab, {t["id"]: t for t in listed}, unk_id


def _normalizers(normalizer: Any) -> list[dict[str, Any]]:
    if not isinstance(normalizer, dict):
        return []
    if normalizer.get("type") == "Sequence":
        return [s for n in normalizer.get("normalizers") or [] for s in _normalizers(n)]
    return [normalizer]


def _prepends(pre_tokenizer: Any) -> bool:
    """Whether a ▁ is put before the text (SentencePiece's add_dummy_prefix)."""
    steps = [pre_tokenizer] if isinstance(pre_tokenizer, dict) else []
    while steps and steps[0].get("type") == "Sequence":
        steps = list(steps[0].get("pretokenizers") or [])
    metaspace = next((s for s in steps if isinstance(s, dict) and s.get("type") == "Metaspace"), None)
    if metaspace is None:
        return True
    return metaspace.get("prepend_scheme", "always") != "never" and metaspace.get("add_prefix_space", True)


# ----- spiece.model → tokenizer.json -----
def tokenizer_json_from_spm(proto_bytes: bytes, do_lower_case: bool, keep_accents: bool) -> dict[str, Any]:
    """The tokenizer.json transformers' converter writes for this SentencePiece model and these settings."""
    pb = sentencepiece_proto()
    proto = pb.ModelProto()
    proto.ParseFromString(proto_bytes)
    vocab = [[p.piece, p.score - DIGIT_COMMA_PENALTY if _digit_comma(p.piece) else p.score] for p in proto.pieces]
    added = [{"id": i, "content": p.piece, "single_word": False, "lstrip": p.piece == "[MASK]", "rstrip": False,
              "normalized": False, "special": True} for i, p in enumerate(proto.pieces) if p.type in (UNKNOWN, CONTROL)]
    normalizers: list[dict[str, Any]] = [
        {"type": "Replace", "pattern": {"String": "``"}, "content": '"'},
        {"type": "Replace", "pattern": {"String": "''"}, "content": '"'}]
    if not keep_accents:
        normalizers += [{"type": "NFKD"}, {"type": "StripAccents"}]
    if do_lower_case:
        normalizers.append({"type": "Lowercase"})
    if proto.normalizer_spec.precompiled_charsmap:
        normalizers.append({"type": "Precompiled", "precompiled_charsmap":
                            base64.b64encode(proto.normalizer_spec.precompiled_charsmap).decode("ascii")})
    normalizers.append({"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "})
    ids = {p.piece: i for i, p in enumerate(proto.pieces)}
    metaspace = {"type": "Metaspace", "replacement": SPIECE_UNDERLINE,
                 "prepend_scheme": "always" if proto.normalizer_spec.add_dummy_prefix else "never", "split": True}

    def special(name: str, type_id: int) -> dict[str, Any]:
        return {"SpecialToken": {"id": name, "type_id": type_id}}

    def sequence(name: str, type_id: int) -> dict[str, Any]:
        return {"Sequence": {"id": name, "type_id": type_id}}

    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": normalizers},
        "pre_tokenizer": metaspace,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [special("[CLS]", 0), sequence("A", 0), special("[SEP]", 0)],
            "pair": [special("[CLS]", 0), sequence("A", 0), special("[SEP]", 0), sequence("B", 1),
                     special("[SEP]", 1)],
            "special_tokens": {name: {"id": name, "ids": [ids[name]], "tokens": [name]} for name in ("[CLS]", "[SEP]")},
        },
        "decoder": dict(metaspace),
        "model": {"type": "Unigram", "unk_id": proto.trainer_spec.unk_id, "vocab": vocab, "byte_fallback": False},
    }
