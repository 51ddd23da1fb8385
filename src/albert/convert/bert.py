"""BERT-family checkpoints (transformers' BertModel layout: a BERT, MiniLM, a sentence-transformers directory) →
ALBERT directories that compute the same thing.

ALBERT with one layer group per pass and the embedding size equal to the hidden size is BERT: each BERT layer
becomes a group of its own (nothing shared), and the embedding-to-hidden mapping is the identity. The only
difference in the forward is that mapping, which adds nothing. So a converted model's hidden states equal the
BERT's (tests/test_bert_import.py), and distillation can start a student from the teacher's own weights, then
share and narrow it.

`layers` keeps some of the BERT's layers (a shallower start, each kept layer still its own group); `passes` runs
those groups more times than there are groups (ALBERT's sharing: `layers` [3] with 4 passes is one layer run four
times); `embedding_size` factorizes the embeddings (ALBERT's E < H): the word, position and type tables are projected
onto the E directions that carry most of the word embeddings' variance (an SVD of the word embeddings, centred as
BERT's LayerNorm centres each vector), and the embedding-to-hidden mapping takes them back, with the LayerNorm's
scale and shift, so that the start computes nearly what the BERT computes (docs/distillation.md has how near). Both
are starts for distillation, not exact conversions. `tokenizer`
moves the model onto an ALBERT SentencePiece vocabulary: each piece's embedding is the mean of the BERT embeddings
of the WordPiece tokens its text splits into (an approximation, which distillation then trains away).

Without it the output keeps the BERT's own vocabulary, row for row, written as a SentencePiece model (albert's
tokenizer, and transformers' AlbertTokenizer, read SentencePiece): a word-initial WordPiece token `w` is the piece
`▁w`, a continuation `##x` the piece `x`, and the normalizer puts spaces around each punctuation mark and CJK
character, as BERT's basic tokenizer splits them off. SentencePiece segments by the best total score where
WordPiece takes the longest match first; scores that favour fewer pieces, then longer ones, then a longer first
piece make the two agree on ~97% of tokens of English prose (docs/distillation.md), and the rest are other splits of
the same word into the same vocabulary.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch

from albert.errors import CheckpointError
from albert.io.files import read_model_json
from albert.io.output_dirs import check_new_output, claim_output
from albert.modeling.config import AlbertConfig, check_fits_memory
from albert.modeling.pretrained import check_weights, read_state_dict
from albert.tokenization.wordpiece import (
    BERT_SPECIALS,
    lowercases,
    read_wordpiece_vocabulary,
    wordpiece_as_sentencepiece,
)

# (BERT name, our name); {l} is a BERT layer, {g} the group it becomes. Torch's Linear layout on both sides.
_LAYER_BERT = "encoder.layer.{l}."
_LAYER_OURS = "albert.encoder.albert_layer_groups.{g}.albert_layers.0."
BERT_NAMES: list[tuple[str, str]] = [
    ("embeddings.word_embeddings.weight", "albert.embeddings.word_embeddings.weight"),
    ("embeddings.position_embeddings.weight", "albert.embeddings.position_embeddings.weight"),
    ("embeddings.token_type_embeddings.weight", "albert.embeddings.token_type_embeddings.weight"),
    ("embeddings.LayerNorm.weight", "albert.embeddings.LayerNorm.weight"),
    ("embeddings.LayerNorm.bias", "albert.embeddings.LayerNorm.bias"),
    *[(_LAYER_BERT + f"attention.self.{m}.{p}", _LAYER_OURS + f"attention.{m}.{p}")
      for m in ("query", "key", "value") for p in ("weight", "bias")],
    *[(_LAYER_BERT + f"attention.output.{a}.{p}", _LAYER_OURS + f"attention.{b}.{p}")
      for a, b in (("dense", "dense"), ("LayerNorm", "LayerNorm")) for p in ("weight", "bias")],
    *[(_LAYER_BERT + f"intermediate.dense.{p}", _LAYER_OURS + f"ffn.{p}") for p in ("weight", "bias")],
    *[(_LAYER_BERT + f"output.dense.{p}", _LAYER_OURS + f"ffn_output.{p}") for p in ("weight", "bias")],
    *[(_LAYER_BERT + f"output.LayerNorm.{p}", _LAYER_OURS + f"full_layer_layer_norm.{p}") for p in ("weight", "bias")],
    ("pooler.dense.weight", "albert.pooler.weight"),
    ("pooler.dense.bias", "albert.pooler.bias"),
]
_IGNORED = re.compile(r"(^|\.)embeddings\.position_ids$")
_PATTERNS = [(re.compile("^" + re.escape(b).replace(r"\{l\}", r"(?P<l>\d+)") + "$"), ours) for b, ours in BERT_NAMES]


# what a BERT config.json must hold for the conversion: name → (type, smallest, largest); None: optional
_BERT_FIELDS: dict[str, tuple[type, float, float, bool]] = {
    "hidden_size": (int, 1, 65_536, True), "num_attention_heads": (int, 1, 1_024, True),
    "intermediate_size": (int, 1, 262_144, True), "max_position_embeddings": (int, 1, 1_048_576, True),
    "num_hidden_layers": (int, 1, 1_024, True), "type_vocab_size": (int, 1, 1_024, False),
    "layer_norm_eps": (float, 0, 1, False),
}


def check_bert_config(bert: Any, where: Path) -> dict[str, Any]:
    """A BERT config.json's fields the conversion reads, each of its type and in range (one line per fault)."""
    if not isinstance(bert, dict):
        raise CheckpointError(f"{where} is not a JSON object")
    if bert.get("model_type") not in ("bert", None) or bert.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError(f"{where}: not a BERT with absolute positions (model_type {bert.get('model_type')!r})")
    for name, (kind, low, high, required) in _BERT_FIELDS.items():
        if name not in bert:
            if required:
                raise CheckpointError(f"{where}: no {name!r}")
            continue
        value = bert[name]
        fits = (type(value) is int) if kind is int else (type(value) in (int, float) and math.isfinite(value))
        if not fits or not low <= value <= high or (kind is float and value <= low):
            what = "an integer" if kind is int else "a finite number"
            raise CheckpointError(f"{where}: {name} must be {what} in {'(' if kind is float else '['}{low:g}, "
                                  f"{high:g}], got {str(value)[:40]!r}")
    if bert["hidden_size"] % bert["num_attention_heads"]:
        raise CheckpointError(f"{where}: hidden_size {bert['hidden_size']} is not a multiple of num_attention_heads "
                              f"{bert['num_attention_heads']}")
    if not isinstance(bert.get("hidden_act", "gelu"), str):
        raise CheckpointError(f"{where}: hidden_act must be a name, got {bert.get('hidden_act')!r}")
    return bert


def albert_config_for_bert(bert: dict, layers: int, vocab_size: int, passes: int | None = None,
                           embedding_size: int | None = None) -> AlbertConfig:
    """The ALBERT config that computes what `bert` (a checked BERT config.json) computes with `layers` of its
    layers, run `passes` times in all (default once each) from embeddings of `embedding_size` (default the hidden
    size)."""
    return AlbertConfig(vocab_size=vocab_size, embedding_size=embedding_size or bert["hidden_size"],
                        hidden_size=bert["hidden_size"], num_hidden_layers=passes or layers,
                        num_hidden_groups=layers, inner_group_num=1,
                        num_attention_heads=bert["num_attention_heads"],
                        intermediate_size=bert["intermediate_size"],
                        hidden_act=bert.get("hidden_act", "gelu"), hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, max_position_embeddings=bert["max_position_embeddings"],
                        type_vocab_size=bert.get("type_vocab_size", 2),
                        layer_norm_eps=bert.get("layer_norm_eps", 1e-12), pad_token_id=0)


def read_bert(source: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """A BERT directory's config (checked) and weights (names without a `bert.` prefix; floating point and finite,
    read as albert reads its own: safetensors, sharded or not, or a torch .bin as data only)."""
    if not source.is_dir():
        raise CheckpointError(f"{source}: not a directory (a BERT directory has config.json and its weights)")
    config = check_bert_config(read_model_json(source / "config.json"), source / "config.json")
    weights = {k: v for k, v in read_state_dict(source).items() if not _IGNORED.search(k)}  # (int64 buffers)
    check_weights(weights, str(source))
    return config, {k.removeprefix("bert."): v for k, v in weights.items()}


def check_bert_shapes(state: dict[str, torch.Tensor], bert: dict, layers: list[int], where: Path) -> None:
    """Every weight the conversion needs is there, in the shape the config says (our names, before narrowing)."""
    H, inner = bert["hidden_size"], bert["intermediate_size"]
    want = {"albert.embeddings.position_embeddings.weight": (bert["max_position_embeddings"], H),
            "albert.embeddings.token_type_embeddings.weight": (bert.get("type_vocab_size", 2), H),
            "albert.embeddings.LayerNorm.weight": (H,), "albert.embeddings.LayerNorm.bias": (H,)}
    for g in range(len(layers)):
        layer = _LAYER_OURS.format(g=g)
        for m in ("query", "key", "value", "dense"):
            want[f"{layer}attention.{m}.weight"], want[f"{layer}attention.{m}.bias"] = (H, H), (H,)
        want |= {f"{layer}attention.LayerNorm.weight": (H,), f"{layer}attention.LayerNorm.bias": (H,),
                 f"{layer}ffn.weight": (inner, H), f"{layer}ffn.bias": (inner,),
                 f"{layer}ffn_output.weight": (H, inner), f"{layer}ffn_output.bias": (H,),
                 f"{layer}full_layer_layer_norm.weight": (H,), f"{layer}full_layer_layer_norm.bias": (H,)}
    words = state.get("albert.embeddings.word_embeddings.weight")
    if words is None or words.dim() != 2 or words.shape[1] != H:
        raise CheckpointError(f"{where}: the word embeddings must be (vocabulary, {H}) as config.json says, got "
                              f"{None if words is None else tuple(words.shape)}")
    for name, shape in want.items():
        got = state.get(name)
        if got is None or tuple(got.shape) != shape:
            bert_name = next((b for b, ours in BERT_NAMES if ours == name), name)
            raise CheckpointError(f"{where}: weight {bert_name.replace('{l}', str(layers[0]))!r} "
                                  f"{'is missing' if got is None else f'is {tuple(got.shape)}'}; config.json says "
                                  f"{shape}")


def bert_to_ours(weights: dict[str, torch.Tensor], layers: list[int]) -> dict[str, torch.Tensor]:
    """Our state dict from BERT's: BERT layer `layers[g]` becomes group g; the mapping is the identity."""
    group = {layer: g for g, layer in enumerate(layers)}
    state: dict[str, torch.Tensor] = {}
    for name, tensor in weights.items():
        if _IGNORED.search(name) or name.startswith("cls."):  # buffers; pretraining heads a sentence model lacks
            continue
        for pattern, target in _PATTERNS:
            m = pattern.match(name)
            if m:
                if "l" in m.groupdict():
                    if int(m["l"]) not in group:
                        break
                    target = target.format(g=group[int(m["l"])])
                state[target] = tensor.float()
                break
        else:
            raise CheckpointError(f"unknown BERT weight {name!r}")
    hidden = state["albert.embeddings.LayerNorm.weight"].shape[0] if "albert.embeddings.LayerNorm.weight" in state \
        else 0
    state["albert.encoder.embedding_hidden_mapping_in.weight"] = torch.eye(hidden)
    state["albert.encoder.embedding_hidden_mapping_in.bias"] = torch.zeros(hidden)
    return state


def factorize_embeddings(state: dict[str, torch.Tensor], size: int) -> None:
    """Narrow `state`'s embeddings (BERT's: tables of the hidden size, then its LayerNorm) to `size` in place.

    BERT's first hidden state is LN(x) = g * (x - mean(x)) / std(x) + b for x = word + position + type rows. With P
    the `size` directions of most variance of that sum (the top eigenvectors of the centred tables' summed
    covariances: a token draws one row of each), z = P^T x keeps most of x - mean(x) — for all-MiniLM-L6-v2 at 128
    of 384, 74% of its energy, where the word table's own SVD keeps 63% (docs/distillation.md). ALBERT normalizes z
    (its LayerNorm of width `size`, scale 1, shift 0) and maps it back with g * P * sqrt(H / E) + b: the sqrt undoes
    z's smaller count of dimensions in its std, so the map gives LN(x) wherever x lies in P's span.
    """
    prefix = "albert.embeddings."
    tables = [prefix + t + ".weight" for t in ("word_embeddings", "position_embeddings", "token_type_embeddings")]
    centred = [state[t].double() - state[t].double().mean(dim=1, keepdim=True) for t in tables]
    covariance = sum(rows.T @ rows / len(rows) for rows in centred)
    basis = torch.linalg.eigh(covariance)[1][:, -size:].float()  # hidden x size, orthonormal columns
    hidden = basis.shape[0]
    for name, rows in zip(tables, centred, strict=True):
        state[name] = rows.float() @ basis
    gain, shift = state.pop(prefix + "LayerNorm.weight"), state.pop(prefix + "LayerNorm.bias")
    state[prefix + "LayerNorm.weight"] = torch.ones(size)
    state[prefix + "LayerNorm.bias"] = torch.zeros(size)
    state["albert.encoder.embedding_hidden_mapping_in.weight"] = gain[:, None] * basis * math.sqrt(hidden / size)
    state["albert.encoder.embedding_hidden_mapping_in.bias"] = shift


def transfer_vocabulary(embeddings: torch.Tensor, bert_tokenizer: Path, pieces: list[str]) -> torch.Tensor:
    """Embeddings for a SentencePiece vocabulary (`pieces`, ▁ marking a word's start) from a BERT's WordPiece
    ones: each piece's is the mean of the embeddings of the WordPiece tokens its text splits into (a piece inside a
    word begins with a continuation, ##...); special tokens take their BERT counterparts."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise CheckpointError("moving a BERT onto another vocabulary reads its tokenizer.json with the tokenizers "
                              "library: pip install tokenizers") from None
    path = bert_tokenizer / "tokenizer.json"
    if not path.is_file():
        raise CheckpointError(f"{bert_tokenizer}: no tokenizer.json (the BERT's WordPiece tokenizer)")
    wordpiece = Tokenizer.from_file(str(path))
    wordpiece.no_padding()  # (sentence-transformers' files pad every text to the model's length)
    wordpiece.no_truncation()
    vocab = wordpiece.get_vocab()
    unk = vocab.get("[UNK]", 0)
    out = torch.empty(len(pieces), embeddings.shape[1])
    for i, piece in enumerate(pieces):
        if piece in BERT_SPECIALS:
            ids = [vocab.get(BERT_SPECIALS[piece], unk)]
        else:
            text = piece.replace("▁", " ").strip()
            if not text:  # the word boundary alone
                ids = [unk]
            else:
                encoding = wordpiece.encode(text, add_special_tokens=False)
                ids = encoding.ids
                if ids and not piece.startswith("▁"):  # inside a word: its first token's continuation (##) form
                    ids = [vocab.get("##" + encoding.tokens[0], ids[0])] + ids[1:]
        out[i] = embeddings[ids or [unk]].mean(0)
    return out


def convert_bert(source: str | Path, out: str | Path, tokenizer: str | Path | None = None,
                 layers: list[int] | None = None, passes: int | None = None,
                 embedding_size: int | None = None) -> dict[str, object]:
    """An AlbertModel directory from a BERT directory; see the module's doc. Returns what was made."""
    from albert.modeling.pretrained import AlbertModel
    from albert.tokenization.tokenizer import AlbertTokenizer

    source = Path(source)
    check_new_output(out, "convert")
    bert, weights = read_bert(source)
    n_layers = bert["num_hidden_layers"]
    kept = list(range(n_layers)) if layers is None else layers
    if not kept or any(not 0 <= layer < n_layers for layer in kept) or len(set(kept)) != len(kept):
        raise CheckpointError(f"--layers must name layers of the BERT's 0..{n_layers - 1}, each once, got {layers}")
    if passes is not None and passes < len(kept):
        raise CheckpointError(f"--passes ({passes}) must be at least the number of layers kept ({len(kept)})")
    state = bert_to_ours(weights, kept)
    check_bert_shapes(state, bert, kept, source)
    hidden = state["albert.embeddings.word_embeddings.weight"].shape[1]
    if embedding_size is not None and not 1 <= embedding_size <= hidden:
        raise CheckpointError(f"--embedding-size must be in 1..{hidden} (the BERT's hidden size), got {embedding_size}")
    if tokenizer is None:  # the BERT's own vocabulary, row for row
        tokens = read_wordpiece_vocabulary(source)
        if len(tokens) != state["albert.embeddings.word_embeddings.weight"].shape[0]:
            raise CheckpointError(f"{source}: {len(tokens)} WordPiece tokens for "
                                  f"{state['albert.embeddings.word_embeddings.weight'].shape[0]} embedding rows")
        lower = lowercases(source)  # (BERT strips accents where it lowercases, unless told otherwise)
        sp = AlbertTokenizer(model_proto=wordpiece_as_sentencepiece(tokens), do_lower_case=lower,
                             keep_accents=not lower)
    else:
        sp = AlbertTokenizer.from_pretrained(tokenizer)
        pieces = [sp.sp.id_to_piece(i) for i in range(sp.vocab_size)]
        state["albert.embeddings.word_embeddings.weight"] = transfer_vocabulary(
            state["albert.embeddings.word_embeddings.weight"], source, pieces)
    if embedding_size is not None and embedding_size < hidden:
        factorize_embeddings(state, embedding_size)
    config = albert_config_for_bert(bert, len(kept), state["albert.embeddings.word_embeddings.weight"].shape[0],
                                    passes, embedding_size)
    check_fits_memory(config)
    model = AlbertModel(config)
    # (AlbertModel is the backbone itself: its names lack the `albert.` that heads put before them)
    missing, unexpected = model.load_state_dict({k.removeprefix("albert."): v for k, v in state.items()}, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"the BERT's weights do not fit (missing {missing[:3]}, unexpected {unexpected[:3]})")
    with claim_output(out, "convert") as staging:
        model.save_pretrained(staging)
        sp.save_pretrained(staging)
    return {"layers": kept, "passes": config.num_hidden_layers, "embedding_size": config.embedding_size,
            "vocab_size": config.vocab_size, "parameters": model.num_parameters()}
