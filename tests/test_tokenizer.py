"""The tokenizer against transformers 4.x's sentencepiece ("slow") AlbertTokenizer, plus properties."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
import transformers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from albert.errors import CheckpointError, InputError
from albert.tokenization.tokenizer import AlbertTokenizer

EDGE_CASES = [
    "I was born in 92000, and this is falsé.", "1,000,000, 3, 4,5 and 12,", "hello [MASK] world", "  [MASK]",
    "[MASK]", "a[MASK]b [MASK][MASK] c", "İstanbul ΣΑΣ ß ﬁ", "``quoted'' text", "a <unk> b <pad>[SEP]x[CLS]",
    "ＦＵＬＬ width ＡＢＣ１２３", "x\u0301y e\u0301", "tab\tand\nnewline\r\n end", "\x00\x1c\x1f control", "   ",
    "", "naïve café résumé", "emoji 🙂 and ☃", "[mask] is not special when lowercased",
]


@pytest.fixture(scope="module")
def reference(tokenizer_dir: Path):
    """transformers' SentencePiece ("slow") AlbertTokenizer: 4.57 is the last release that has it. The default
    environment has transformers 5; scripts/test.sh runs these tests again with 4.57 on PYTHONPATH (.tf4)."""
    if int(transformers.__version__.split(".")[0]) >= 5:
        pytest.skip("needs transformers 4.57's SentencePiece AlbertTokenizer (scripts/test.sh runs it in .tf4)")
    return transformers.AlbertTokenizer.from_pretrained(str(tokenizer_dir))


@pytest.mark.sentencepiece_reference
def test_ids_equal_transformers_on_every_fixture_line(tokenizer: AlbertTokenizer, reference, text_lines) -> None:
    ours = tokenizer(text_lines)["input_ids"]
    for line, got in zip(text_lines, ours):
        assert got == reference(line)["input_ids"], line


@pytest.mark.sentencepiece_reference
def test_edge_cases_equal_transformers(tokenizer: AlbertTokenizer, reference) -> None:
    for text in EDGE_CASES:
        assert tokenizer.encode(text) == reference.encode(text), repr(text)
        assert tokenizer.tokenize(text) == reference.tokenize(text), repr(text)


@pytest.mark.sentencepiece_reference
def test_pairs_truncation_and_padding_equal_transformers(tokenizer: AlbertTokenizer, reference, text_lines) -> None:
    a, b = text_lines[10:30], text_lines[40:60]
    questions = [line[:30] for line in a]
    for first, kwargs in ((a, dict()), (a, dict(truncation=True, max_length=40)),
                          (questions, dict(truncation="only_second", max_length=60)),
                          (a, dict(truncation="longest_first", max_length=33, padding="max_length")),
                          (a, dict(padding=True))):
        got = tokenizer(first, b, return_special_tokens_mask=True, **kwargs)
        expected = reference(first, b, return_special_tokens_mask=True, **kwargs)
        for key in ("input_ids", "token_type_ids", "attention_mask", "special_tokens_mask"):
            assert got[key] == expected[key], (key, kwargs)
    for tensors in ("pt", "np"):  # tensors as transformers returns them: same values, int64
        got = tokenizer(a, b, padding=True, return_tensors=tensors)
        expected = reference(a, b, padding=True, return_tensors=tensors)
        for key in ("input_ids", "token_type_ids", "attention_mask"):
            assert got[key].dtype == expected[key].dtype and got[key].tolist() == expected[key].tolist()
    # transformers logs and returns an over-long sequence here; we refuse clearly
    with pytest.raises(InputError, match="fills max_length"):
        tokenizer(" ".join(a), "x", truncation="only_second", max_length=20)


def test_offsets_point_into_the_original_text(tokenizer: AlbertTokenizer) -> None:
    text = "Héllo  WORLD, naïve café: 92000, ok"
    enc = tokenizer(text, return_offsets_mapping=True)
    pieces = tokenizer.convert_ids_to_tokens(enc["input_ids"])
    for piece, (s, e) in zip(pieces[1:-1], enc["offset_mapping"][1:-1]):
        surface = unicodedata.normalize("NFKD", text[s:e]).lower()
        surface = "".join(c for c in surface if not unicodedata.combining(c))
        if piece == "▁":  # a lone word-boundary piece covers the space before the word
            assert surface.isspace() or surface == "", (piece, text[s:e])
            continue
        assert surface.strip() and piece.replace("▁", "") in surface or piece == "<unk>", (piece, text[s:e])


def test_overflowing_windows_cover_the_context(tokenizer: AlbertTokenizer, text_lines) -> None:
    question, context = "what is the whale?", " ".join(text_lines[:5])
    enc = tokenizer([question], [context], truncation="only_second", max_length=64, stride=16,
                    return_overflowing_tokens=True, return_offsets_mapping=True)
    assert len(enc["input_ids"]) > 2 and set(enc["overflow_to_sample_mapping"]) == {0}
    full = tokenizer.encode_pieces([context])[0].ids
    seen = []
    for ids, types in zip(enc["input_ids"], enc["token_type_ids"]):
        assert len(ids) <= 64
        seen.append([t for t, k in zip(ids, types) if k == 1][:-1])
    assert seen[0] == full[: len(seen[0])]
    assert seen[-1] == full[-len(seen[-1]):]
    assert seen[1][:16] == seen[0][-16:]  # consecutive windows overlap by `stride` tokens


def test_decode_round_trip(tokenizer: AlbertTokenizer, text_lines) -> None:
    for line in text_lines[:200]:
        ids = tokenizer.encode(line)
        if tokenizer.unk_token_id in ids:
            continue
        assert tokenizer.decode(ids, skip_special_tokens=True) == tokenizer.preprocess_text(line)


@pytest.mark.sentencepiece_reference
def test_save_pretrained_loads_in_transformers(tokenizer: AlbertTokenizer, reference, tmp_path: Path) -> None:
    tokenizer.save_pretrained(tmp_path)
    theirs = transformers.AlbertTokenizer.from_pretrained(str(tmp_path))
    assert theirs.encode("a [MASK] test, 1,000,") == tokenizer.encode("a [MASK] test, 1,000,")
    assert AlbertTokenizer.from_pretrained(tmp_path).encode("x y") == tokenizer.encode("x y")


def test_bad_inputs(tokenizer: AlbertTokenizer, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        AlbertTokenizer(tmp_path / "missing.model")
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="not a valid SentencePiece model"):
        AlbertTokenizer(bad)
    assert tokenizer.encode("") == [tokenizer.cls_token_id, tokenizer.sep_token_id]
    assert tokenizer.encode(" \t\n ") == [tokenizer.cls_token_id, tokenizer.sep_token_id]
    assert tokenizer.encode("[MASK]")[1:-1] == [tokenizer.mask_token_id]
    big = "word " * 200_000  # 1 MB
    assert len(tokenizer.encode(big, truncation=True, max_length=512)) == 512
    with pytest.raises(InputError):
        tokenizer(123)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=60))
def test_arbitrary_unicode(tokenizer: AlbertTokenizer, text: str) -> None:
    enc = tokenizer(text, return_offsets_mapping=True)
    plain = tokenizer(text)
    assert enc["input_ids"] == plain["input_ids"]  # the offsets path and the batch path agree
    for s, e in enc["offset_mapping"]:
        assert 0 <= s <= e <= len(text)
    ids = plain["input_ids"][1:-1]
    if tokenizer.unk_token_id not in ids and all(i not in tokenizer.all_special_ids for i in ids):
        # the full normalisation: ALBERT's preprocessing, then SentencePiece's own (NFKC, no control chars)
        expected = tokenizer.sp.normalize(tokenizer.preprocess_text(text)).replace("▁", " ").strip()
        assert tokenizer.decode(ids) == expected


@pytest.mark.sentencepiece_reference
def test_an_empty_second_text_is_still_a_pair(tokenizer: AlbertTokenizer, reference) -> None:
    for text, pair in (("call me ishmael.", ""), ("", ""), ("a", " "), ("a b", "\t\n")):
        assert tokenizer(text, pair) == reference(text, pair), (text, pair)
    assert tokenizer(["a", "b"], ["", "c"])["input_ids"] == reference(["a", "b"], ["", "c"])["input_ids"]


@pytest.mark.parametrize("name", ["tiny", "albert-small-en-embed"])
def test_a_long_text_segments_every_word_as_alone(tokenizer: AlbertTokenizer, text_lines, name: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """SentencePiece sums a text's piece scores in float32 from its start; on a long text the rounding outgrew the
    margins of the vocabulary compiled from WordPiece (the embed model's) and a 40,000-character text segmented
    words as no short text does. Texts are encoded in word-bounded parts: each word's pieces are its own, and the
    ids and offsets are those of one part wherever one part's rounding does not matter (the tiny vocabulary)."""
    from albert.tokenization import tokenizer as module

    tok = tokenizer if name == "tiny" else AlbertTokenizer.from_pretrained(name)
    text = " ".join(text_lines * max(1, 60_000 // len(" ".join(text_lines))))
    words = text.split()
    alone = [i for ids in tok.encode_pieces(words) for i in ids.ids]
    plain, located = tok.encode_pieces([text])[0], tok.encode_pieces([text], with_offsets=True)[0]
    assert plain.ids == alone and located.ids == alone
    if name == "tiny":
        monkeypatch.setattr(module.word_bounded_spans, "__defaults__", (10**9,))  # one part
        assert tok.encode_pieces([text], with_offsets=True)[0].offsets == located.offsets
        assert tok.encode_pieces([text])[0].ids == alone


def test_tokenizing_many_texts_keeps_nothing_of_them(tokenizer: AlbertTokenizer) -> None:
    """Memory does not grow with the number of texts tokenized (a long `--file` job, a server's life): 3,000
    distinct non-ASCII texts of ~300 characters leave under 256 KiB allocated behind (a memo of the accent step, keyed
    by whole texts, kept ~1.5 KiB of each: ~4.5 MB here)."""
    import gc
    import tracemalloc

    texts = [f"“Café {i}” — naïve résumé number {i}, " * 8 for i in range(3000)]
    tokenizer(texts[:10])
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for start in range(0, len(texts), 100):
            tokenizer(texts[start:start + 100])
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 256 * 1024, grown
