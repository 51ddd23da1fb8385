"""`albert convert --for-finetuning`: a sentence-vector student (from `albert distill`) made ready for fine-tuning
without moving its normalised vectors."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import torch
from torch import nn

from albert.data.texts import select_texts
from albert.errors import ConfigError, DataError
from albert.inference.hidden_states import last_states
from albert.io.output_dirs import check_new_output, claim_output
from albert.tokenization.tokenizer import AlbertTokenizer

FIT_TEXTS = 1000  # paragraphs whose tokens set fit_for_finetuning's scale


def fit_for_finetuning(source: str | Path, out: str | Path, text_files: list[str], max_seq_length: int = 128
                       ) -> tuple[float, bool]:
    """`source` (an albert model directory whose last pass runs its own layer group) written to `out` with two
    changes that leave its sentence vectors' directions as they were, so `albert embed` gives the same normalised
    vectors:
    - the last LayerNorm's gain and bias multiplied by the power of two that brings the last hidden states' RMS per
      dimension nearest 1 over the tokens of FIT_TEXTS paragraphs of `text_files` (drawn with seed 0); a power of
      two, so every state is scaled exactly, in every precision. A student that regressed unit-length teacher
      vectors keeps its states ~10x smaller than a LayerNorm's own output, and a fine-tuning head at the usual
      learning rates then moves its logits ~10x slower;
    - the pooler made the identity (the classifier reads tanh of the [CLS] state): distillation through the mean
      vector never trains it, and a sentence-transformers teacher's own is untrained (all-MiniLM-L6-v2's has a zero
      bias), so a sequence classifier would read a random projection.
    A last pass that shares its layer group with other passes (an ALBERT in the paper's sense) cannot be scaled alone:
    scaling its group would change every pass of it. There the pooler becomes the scale times the identity instead, so
    the heads that read the pooler (sequence classification, multiple choice, sentence order) get the input they get
    from a scaled model, exactly; the heads that read the hidden states (tagging, QA) read them as distilled.
    Returns (the scale, whether the hidden states were scaled). docs/distillation.md, "Ready for fine-tuning", has
    the measurement behind both."""
    from albert.io.hub import resolve_model_dir
    from albert.modeling.pretrained import AlbertModel

    check_new_output(out, "convert")
    source = Path(source) if Path(source).is_dir() else resolve_model_dir(str(source))
    model = AlbertModel.from_pretrained(source)
    config, pooler = model.config, model.pooler
    if pooler is None:
        raise ConfigError(f"{source}: fitting for fine-tuning needs a model with a pooler")
    own_group = config.num_hidden_groups == config.num_hidden_layers  # the last pass runs a group of its own
    dtype = next(model.parameters()).dtype
    model = model.float().eval()
    texts = select_texts(text_files, FIT_TEXTS, 0.0, seed=0)
    total, count = 0.0, 0
    for hidden, mask in last_states(model, AlbertTokenizer.from_pretrained(source), texts, max_seq_length):
        kept = hidden[mask.bool()]
        total, count = total + float(kept.pow(2).sum()), count + kept.numel()
    if not count:
        raise DataError("fitting for fine-tuning needs texts with tokens")
    scale = 2.0 ** round(math.log2((count / total) ** 0.5))
    norm = model.get_submodule(f"encoder.albert_layer_groups.{config.num_hidden_groups - 1}.albert_layers."
                               f"{config.inner_group_num - 1}.full_layer_layer_norm")
    assert isinstance(norm, nn.LayerNorm)
    with torch.no_grad():
        if own_group:
            norm.weight.mul_(scale)
            norm.bias.mul_(scale)
        pooler.weight.copy_(torch.eye(config.hidden_size) * (1.0 if own_group else scale))
        pooler.bias.zero_()
    with claim_output(out, "convert") as staging:
        for item in source.iterdir():  # tokenizer, sentence-transformers layout, card: as they were
            if item.is_file() and item.suffix not in (".safetensors", ".bin") and item.name != "config.json":
                shutil.copyfile(item, staging / item.name)
            elif item.is_dir():
                shutil.copytree(item, staging / item.name)
        model.to(dtype).save_pretrained(staging)
    return scale, own_group
