"""albert in today's ecosystem, against the real libraries: transformers 5's tokenizer.json directories,
sentence-transformers, TensorBoard's event files, every --file format, the package's metadata."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import albert
from albert.tokenization.tokenizer import AlbertTokenizer

FIXTURE = Path(__file__).parent / "fixtures" / "public_domain.txt"
# texts as people write them: no special tokens in them, no stray control characters
EXTRA = ["I was born in 92000, and this is falsé.", "1,000,000, 3, 4,5 and 12,", "İstanbul ΣΑΣ ß ﬁ",
         "``quoted'' text", "ＦＵＬＬ width ＡＢＣ１２３", "naïve café résumé", "tab\tand\nnewline end",
         "emoji 🙂 and ☃", "e.g. 3.5 apples (big) - said he", "  leading and trailing  "]


def lines() -> list[str]:
    return [x for x in FIXTURE.read_text(encoding="utf-8").splitlines() if x.strip()] + EXTRA


@pytest.fixture(scope="module")
def plain_vocabulary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SentencePiece vocabulary in the official ALBERT layout (control symbols, no user-defined ones)."""
    import sentencepiece as spm

    out = tmp_path_factory.mktemp("plain")
    spm.SentencePieceTrainer.train(sentence_iterator=iter([x.lower() for x in lines()]),
                                   model_prefix=str(out / "spiece"), vocab_size=2000, model_type="unigram",
                                   pad_id=0, unk_id=1, bos_id=-1, eos_id=-1,
                                   control_symbols=["[CLS]", "[SEP]", "[MASK]"], minloglevel=2)
    return out


@pytest.fixture(scope="module")
def plain_model(plain_vocabulary: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random ALBERT on the plain vocabulary (sentence-transformers tokenizes with transformers' fast
    tokenizer, which agrees with SentencePiece on such a vocabulary: see the test below)."""
    import torch

    torch.manual_seed(0)
    config = albert.AlbertConfig.from_preset("albert-tiny")
    config = albert.AlbertConfig.from_dict({**config.to_dict(), "vocab_size": 2000})
    out = tmp_path_factory.mktemp("plain-model")
    albert.AlbertModel(config).save_pretrained(out)
    AlbertTokenizer.from_pretrained(plain_vocabulary / "spiece.model").save_pretrained(out)
    return out


def transformers5() -> Any:
    import transformers
    if int(transformers.__version__.split(".")[0]) < 5:
        pytest.skip("needs transformers 5 (the default test environment has it)")
    return transformers


def test_a_transformers5_tokenizer_json_directory_gives_transformers5s_ids(plain_vocabulary: Path,
                                                                          tmp_path: Path, record_property: Any
                                                                          ) -> None:
    """albert reads the directory transformers 5 writes (tokenizer.json, no spiece.model) to SentencePiece's own
    ids; how often transformers' own ids differ from SentencePiece's is recorded, not asserted."""
    transformers = transformers5()
    transformers.AlbertTokenizer.from_pretrained(str(plain_vocabulary)).save_pretrained(tmp_path / "tf5")
    record_property("transformers_wrote", sorted(p.name for p in (tmp_path / "tf5").iterdir()))
    (tmp_path / "tf5" / "spiece.model").unlink(missing_ok=True)  # albert reads tokenizer.json alone
    ours = AlbertTokenizer.from_pretrained(tmp_path / "tf5")
    theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "tf5"))
    spm_itself = AlbertTokenizer.from_pretrained(plain_vocabulary / "spiece.model")
    texts = lines()
    assert len(texts) > 2000
    for text in texts:
        assert ours(text)["input_ids"] == spm_itself(text)["input_ids"], text
    record_property("transformers_differs_on", sum(theirs(t)["input_ids"] != ours(t)["input_ids"] for t in texts))
    pairs, expected = ours(texts[:50], texts[50:100]), theirs(texts[:50], texts[50:100], return_token_type_ids=True)
    assert pairs["input_ids"] == expected["input_ids"] and pairs["token_type_ids"] == expected["token_type_ids"]


def test_albert_writes_a_tokenizer_json_that_transformers5_reads(plain_vocabulary: Path, tmp_path: Path) -> None:
    transformers = transformers5()
    ours = AlbertTokenizer.from_pretrained(plain_vocabulary / "spiece.model")
    ours.save_pretrained(tmp_path / "ours")
    (tmp_path / "ours" / "spiece.model").unlink()  # transformers 5 reads tokenizer.json alone
    theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "ours"))
    for text in lines():
        assert theirs(text)["input_ids"] == ours(text)["input_ids"], text
    # the converter's layout: what transformers 4's AlbertConverter writes for the same model
    written = json.loads((tmp_path / "ours" / "tokenizer.json").read_text())
    assert written["model"]["type"] == "Unigram" and written["pre_tokenizer"]["type"] == "Metaspace"


def test_albert_vocabularies_with_user_defined_pieces(tmp_path: Path, record_property: Any) -> None:
    """albert's own vocabularies define user-defined pieces (( ) \" - . – £ €): the tokenizer.json albert writes
    keeps SentencePiece's segmentation of them in transformers 5, special tokens in the text included. The
    tokenizer.json transformers' own converter writes for such a vocabulary has varied by release (up to 5.24 it
    made them added tokens and split the text at them); albert reads that file with SentencePiece's semantics
    whatever it holds. transformers' own segmentation is recorded, not asserted: it is another project's."""
    transformers = transformers5()
    from albert.io.hub import packaged_models_dir

    tokenizer_dir = packaged_models_dir() / "albert-small-en"  # the embedded model's vocabulary
    ours = AlbertTokenizer.from_pretrained(tokenizer_dir)
    ours.save_pretrained(tmp_path / "t")
    (tmp_path / "t" / "spiece.model").unlink()
    theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "t"))
    checked = 0
    for text in lines():
        assert theirs(text)["input_ids"] == ours(text)["input_ids"], text
        checked += 1
    # special tokens written in the text too
    rng = random.Random(0)
    for text in lines()[:400]:
        words = text.split()[:12]
        for _ in range(rng.randint(1, 3)):
            words.insert(rng.randrange(len(words) + 1), rng.choice(["[MASK]", "[SEP]", "[CLS]", "<unk>", "<pad>"]))
        mixed = rng.choice([" ", ""]).join(words)
        assert theirs(mixed)["input_ids"] == ours(mixed)["input_ids"], mixed
        checked += 1
    assert checked >= 400
    assert ours.convert_ids_to_tokens(ours("(big)")["input_ids"])[1:4] == ["▁", "(", "big"]  # SentencePiece's
    transformers.AlbertTokenizer.from_pretrained(str(tokenizer_dir)).save_pretrained(tmp_path / "theirs")
    # albert reads transformers' converted file with SentencePiece's semantics: the ids of the vocabulary itself
    assert AlbertTokenizer.from_pretrained(tmp_path / "theirs")("(big)")["input_ids"] == ours("(big)")["input_ids"]
    converted = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "theirs"))
    differing = sum(converted(t)["input_ids"] != ours(t)["input_ids"] for t in lines()[:2000])
    record_property(f"transformers_{transformers.__version__}_converter_differs_on", f"{differing} of 2000 lines")


# ----- sentence-transformers -----
def test_sentence_transformers_loads_what_albert_writes_and_albert_reads_its_pooling(plain_model: Path,
                                                                                     tmp_path: Path) -> None:
    import sentence_transformers as st
    tiny_model = plain_model
    texts = lines()[:24]
    embed = albert.pipeline("feature-extraction", model=tiny_model, precision="fp32")
    for pooling, normalize in (("auto", None), ("cls", True), ("max", False)):
        out = tmp_path / f"st-{pooling}"
        code = subprocess.run([sys.executable, "-m", "albert", "export", "sentence-transformers", "--model",
                               str(tiny_model), "--out", str(out), "--pooling", pooling,
                               "--normalize" if normalize else "--no-normalize"], capture_output=True, text=True,
                              timeout=300)
        assert code.returncode == 0, code.stderr
        theirs = st.SentenceTransformer(str(out), device="cpu").encode(texts, convert_to_numpy=True)
        ours = np.array(embed(texts, pooling="mean" if pooling == "auto" else pooling, normalize=bool(normalize)))
        np.testing.assert_allclose(ours, theirs, atol=1e-5)
        # albert reads the directory's pooling and normalisation as its defaults
        again = np.array(albert.pipeline("feature-extraction", model=out, precision="fp32")(texts))
        np.testing.assert_allclose(again, theirs, atol=1e-5)


def test_a_directory_sentence_transformers_wrote(plain_model: Path, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer, models  # (models is a submodule: imported by name, or
    #                                                                 only if an earlier test happened to)

    word = models.Transformer(str(plain_model))
    pool = models.Pooling(word.get_word_embedding_dimension(), pooling_mode="cls")
    model = SentenceTransformer(modules=[word, pool, models.Normalize()], device="cpu")
    model.save(str(tmp_path / "st"))
    texts = lines()[:16]
    expected = model.encode(texts, convert_to_numpy=True)
    got = np.array(albert.pipeline("feature-extraction", model=tmp_path / "st", precision="fp32")(texts))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    out = subprocess.run([sys.executable, "-m", "albert", "embed", "--model", str(tmp_path / "st"), "--precision",
                          "fp32", texts[0]], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and np.allclose(json.loads(out.stdout), expected[0], atol=1e-5)


def test_embed_help_states_the_default_pooling() -> None:
    out = subprocess.run([sys.executable, "-m", "albert", "embed", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert "else mean over the text's tokens" in " ".join(out.stdout.split())


# ----- TensorBoard -----
def test_tensorboard_logger_writes_the_same_scalars(prepared_data: Path, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from albert.train.pretrain import pretrain
    from albert.train.settings import PretrainSettings

    run = tmp_path / "run"
    pretrain(PretrainSettings(data=str(prepared_data), run_dir=str(run), model="albert-tiny", max_seq_length=32,
                              batch_size=4, max_steps=6, eval_every=3, eval_examples=8, save_every=3,
                              learning_rate=1e-3, progress=False, precision="fp32", num_threads=1,
                              logger="tensorboard"))
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r.get("kind") != "eval"]
    evals = [r for r in records if r.get("kind") == "eval"]
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [r["step"] for r in train]
    np.testing.assert_allclose([e.value for e in loss], [r["loss"] for r in train], rtol=1e-6)
    assert [e.step for e in events.Scalars("eval/eval_mlm_acc")] == [r["step"] for r in evals]
    from albert.train.plot import read_metrics

    assert len(read_metrics(run)[0]) == 6  # albert plot reads metrics.jsonl as before


# ----- inputs -----
def test_every_file_format_gives_the_same_inputs(tiny_model: Path, tmp_path: Path, albert_cli: Any) -> None:
    texts = lines()[:5]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    import csv

    for name, delimiter in (("in.csv", ","), ("in.tsv", "\t")):
        with open(tmp_path / name, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, delimiter=delimiter)
            writer.writerow(["id", "text"])
            writer.writerows([i, t] for i, t in enumerate(texts))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": texts}), tmp_path / "in.parquet")
    outputs = []
    for name in ("in.txt", "in.jsonl", "in.csv", "in.tsv", "in.parquet"):
        out = albert_cli("embed", "--model", str(tiny_model), "--file", str(tmp_path / name))
        assert out.returncode == 0, (name, out.stderr)
        outputs.append(out.stdout)
    assert len(set(outputs)) == 1 and len(outputs[0].splitlines()) == 5


# ----- packaging -----
def test_the_distribution_has_a_name_of_its_own_and_its_metadata() -> None:
    from importlib.metadata import metadata

    meta = metadata("albert-lm")
    assert meta["Name"] == "albert-lm" and (meta["License-Expression"] or meta["License"]) == "Apache-2.0"
    extras = set(meta.get_all("Provides-Extra") or [])
    assert {"serve", "onnx", "plot", "data", "tensorboard", "all"} <= extras
    assert any(c.startswith("Topic :: Scientific/Engineering") for c in meta.get_all("Classifier") or [])
    assert meta.get_all("Project-URL")
