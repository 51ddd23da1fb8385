"""A BERT's WordPiece vocabulary as a SentencePiece model that segments as WordPiece does, row for row: a
word-initial token `w` is the piece `▁w`, a continuation `##x` the piece `x`, at the same id; the normalizer puts
spaces around each punctuation mark and CJK character, as BERT's basic tokenizer splits them off; and scores that
favour fewer pieces, then longer ones, then a longer first piece make SentencePiece's best total score agree with
WordPiece's longest match first (docs/distillation.md has how often)."""

from __future__ import annotations

import tempfile
import unicodedata
from pathlib import Path

from albert.errors import CheckpointError
from albert.io.files import read_model_json, read_model_text

# BERT's special tokens for ALBERT's, by role
BERT_SPECIALS = {"<pad>": "[PAD]", "<unk>": "[UNK]", "[CLS]": "[CLS]", "[SEP]": "[SEP]", "[MASK]": "[MASK]"}
_CJK = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
        (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def _split_off_by_bert(c: str) -> bool:
    """BERT's basic tokenizer makes each punctuation mark (ASCII's symbols too) and CJK character a word of its own."""
    o = ord(c)
    if 33 <= o <= 47 or 58 <= o <= 64 or 91 <= o <= 96 or 123 <= o <= 126 or unicodedata.category(c).startswith("P"):
        return True
    return any(a <= o <= b for a, b in _CJK)


# WordPiece's longest-match-first as SentencePiece scores: each piece costs PIECE (fewer pieces first), longer ones
# earn LENGTH x len² (uneven splits: long pieces), a word-initial one FIRST x len more (a longer first piece), and
# each loses up to TIE, spread over its id, so that two segmentations of a word hardly ever score the same:
# SentencePiece sums scores in float32 and transformers' Unigram in float64, and they break exact ties differently.
# docs/distillation.md has how often these values segment as WordPiece does.
_PIECE, _LENGTH, _FIRST, _TIE = 1.0, 0.01, 0.1, 0.0025


def _spread(i: int) -> float:
    """i's place in [0, 1) on the golden-ratio sequence: near ids land far apart."""
    return (i * 0.6180339887498949) % 1.0


def bert_normalizer() -> bytes:
    """A SentencePiece NormalizerSpec (serialized): nmt_nfkc, then a space either side of each character BERT splits
    off, compiled by SentencePiece's own trainer (the only public way to build its precompiled character map)."""
    import sentencepiece as spm

    from albert.tokenization.tokenizer_json import sentencepiece_proto

    pb = sentencepiece_proto()
    nfkc = spm.SentencePieceNormalizer(rule_name="nmt_nfkc", add_dummy_prefix=False, escape_whitespaces=False,
                                       remove_extra_whitespaces=False)
    rules = []
    for cp in range(1, 0x110000):
        if 0xD800 <= cp <= 0xDFFF:  # surrogates are not characters
            continue
        out = "".join(f" {c} " if _split_off_by_bert(c) else c for c in nfkc.normalize(chr(cp)))
        if out != chr(cp):
            rules.append(f"{cp:X}\t{' '.join(f'{ord(c):X}' for c in out)}")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "rules.tsv").write_text("\n".join(rules) + "\n", encoding="utf-8")
        (Path(tmp) / "text.txt").write_text("a b c\n" * 10, encoding="utf-8")
        spm.SentencePieceTrainer.train(input=f"{tmp}/text.txt", model_prefix=f"{tmp}/m", model_type="char",
                                       vocab_size=8, normalization_rule_tsv=f"{tmp}/rules.tsv", minloglevel=2)
        model = pb.ModelProto()
        model.ParseFromString((Path(tmp) / "m.model").read_bytes())
    spec = model.normalizer_spec
    spec.name = "nmt_nfkc_bert_split"
    spec.ClearField("normalization_rule_tsv")  # (the trainer records the rules' temporary path)
    spec.add_dummy_prefix = spec.remove_extra_whitespaces = spec.escape_whitespaces = True
    return bytes(spec.SerializeToString())


def read_wordpiece_vocabulary(source: Path) -> list[str]:
    """A BERT directory's WordPiece tokens in id order, from tokenizer.json or vocab.txt: each token once, the ids
    0 to n - 1, an [UNK]; every fault one line naming the file."""
    path = source / "tokenizer.json"
    if path.exists():
        doc = read_model_json(path)
        model = doc.get("model") if isinstance(doc, dict) else None
        if not isinstance(model, dict) or model.get("type") != "WordPiece":
            kind = model.get("type") if isinstance(model, dict) else None
            raise CheckpointError(f"{path}: a {kind} model, not a BERT's WordPiece" if kind else
                                  f"{path}: no 'model' of type WordPiece")
        vocab = model.get("vocab")
        if not isinstance(vocab, dict) or not all(isinstance(k, str) and type(v) is int for k, v in vocab.items()):
            raise CheckpointError(f"{path}: model.vocab must be an object of tokens → integer ids")
        if sorted(vocab.values()) != list(range(len(vocab))):
            raise CheckpointError(f"{path}: model.vocab's ids must be 0 to {len(vocab) - 1}, each once")
        tokens = sorted(vocab, key=vocab.__getitem__)
    elif (source / "vocab.txt").exists():
        tokens = read_model_text(source / "vocab.txt").splitlines()
    else:
        raise CheckpointError(f"{source}: no tokenizer.json or vocab.txt (the BERT's WordPiece vocabulary)")
    if len(set(tokens)) != len(tokens) or "[UNK]" not in tokens:
        raise CheckpointError(f"{source}: a WordPiece vocabulary has each token once and an [UNK]")
    return tokens


def lowercases(source: Path) -> bool:
    """Whether the BERT's tokenizer lowercases (tokenizer_config.json's do_lower_case; BERT's default: yes)."""
    path = source / "tokenizer_config.json"
    if not path.exists():
        return True
    settings = read_model_json(path)
    value = settings.get("do_lower_case", True) if isinstance(settings, dict) else True
    if not isinstance(value, bool):
        raise CheckpointError(f"{path}: do_lower_case must be true or false, got {value!r}")
    return value


def wordpiece_as_sentencepiece(tokens: list[str]) -> bytes:
    """A serialized SentencePiece model whose piece i is WordPiece token i (see the module's doc)."""
    from albert.tokenization.tokenizer_json import (
        CONTROL,
        NORMAL,
        SPIECE_UNDERLINE,
        UNKNOWN,
        UNUSED,
        sentencepiece_proto,
    )

    pb = sentencepiece_proto()
    model = pb.ModelProto()
    model.normalizer_spec.ParseFromString(bert_normalizer())
    ours = {bert: mine for mine, bert in BERT_SPECIALS.items()}
    for i, token in enumerate(tokens):
        piece = model.pieces.add()
        if token in ours:
            piece.piece, piece.score = ours[token], 0.0
            piece.type = UNKNOWN if token == "[UNK]" else CONTROL
        elif token.startswith("##") and len(token) > 2:
            piece.piece, piece.type = token[2:], NORMAL
            piece.score = -_PIECE + _LENGTH * len(piece.piece) ** 2 - _TIE * _spread(i)
        elif token.startswith("[") and token.endswith("]"):  # [unused0] and the like: kept as rows, never produced
            piece.piece, piece.score, piece.type = token, 0.0, UNUSED
        else:
            piece.piece, piece.type = SPIECE_UNDERLINE + token, NORMAL
            piece.score = -_PIECE + _LENGTH * len(piece.piece) ** 2 + _FIRST * len(piece.piece) - _TIE * _spread(i)
    if len({p.piece for p in model.pieces}) != len(tokens):
        raise CheckpointError("two WordPiece tokens become the same SentencePiece piece; pass --tokenizer instead")
    spec = model.trainer_spec
    spec.model_type, spec.vocab_size = pb.TrainerSpec.UNIGRAM, len(tokens)
    spec.unk_id, spec.bos_id, spec.eos_id = tokens.index("[UNK]"), -1, -1
    spec.pad_id = tokens.index("[PAD]") if "[PAD]" in tokens else -1
    return bytes(model.SerializeToString())
