"""Every head against transformers: random transformers model → save → load in ours → same outputs, and back."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers

import albert
from albert import AlbertConfig
from albert.modeling.backbone import AlbertTransformer
from albert.runtime.kernels import PackedLinear, onednn_available
from albert.runtime.policy import Runtime, prepare_for_inference

VARIANTS = {
    # v1: erf GELU and dropout 0.1 (compared in eval mode)
    "v1": dict(hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1),
    "v2": dict(hidden_act="gelu_new"),
    "groups": dict(num_hidden_layers=4, num_hidden_groups=2),
    "inner": dict(inner_group_num=2, hidden_act="relu"),
    "e_eq_h": dict(embedding_size=64, hidden_act="silu"),
}
BASE = dict(vocab_size=99, embedding_size=16, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
            intermediate_size=96, max_position_embeddings=64, hidden_act="gelu_new")

CLASSES = ["AlbertModel", "AlbertForPreTraining", "AlbertForMaskedLM", "AlbertForSequenceClassification",
           "AlbertForTokenClassification", "AlbertForQuestionAnswering", "AlbertForMultipleChoice"]


def make_inputs(cls_name: str, vocab: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    B, T, C = 3, 11, 2
    shape = (B, C, T) if cls_name == "AlbertForMultipleChoice" else (B, T)
    ids = torch.randint(5, vocab, shape, generator=g)
    mask = torch.ones(shape, dtype=torch.long)
    mask[..., 0, -3:] = 0  # padding on the right of the first row
    types = torch.zeros(shape, dtype=torch.long)
    types[..., 6:] = 1
    inputs = dict(input_ids=ids, attention_mask=mask, token_type_ids=types)
    if cls_name == "AlbertForPreTraining":
        inputs["labels"] = torch.where(torch.rand(shape, generator=g) < 0.3, ids, -100)
        inputs["sentence_order_label"] = torch.randint(0, 2, (B,), generator=g)
    elif cls_name in ("AlbertForMaskedLM",):
        inputs["labels"] = torch.where(torch.rand(shape, generator=g) < 0.3, ids, -100)
    elif cls_name == "AlbertForSequenceClassification":
        inputs["labels"] = torch.randint(0, 3, (B,), generator=g)
    elif cls_name == "AlbertForTokenClassification":
        inputs["labels"] = torch.randint(0, 3, shape, generator=g)
    elif cls_name == "AlbertForQuestionAnswering":
        inputs["start_positions"] = torch.tensor([1, 4, 20])  # 20 is outside the window: ignored
        inputs["end_positions"] = torch.tensor([2, 7, 9])
    elif cls_name == "AlbertForMultipleChoice":
        inputs["labels"] = torch.randint(0, C, (B,), generator=g)
    return inputs


def compare(ours_out, theirs_out, names: list[str], atol: float = 1e-5) -> None:
    for name in names:
        a, b = getattr(ours_out, name), getattr(theirs_out, name)
        if a is None and b is None:
            continue
        if isinstance(a, tuple):
            assert len(a) == len(b), name
            for x, y in zip(a, b):
                torch.testing.assert_close(x, y, atol=atol, rtol=1e-4, msg=name)
        else:
            torch.testing.assert_close(a, b, atol=atol, rtol=1e-4, msg=name)


OUTPUT_NAMES = {
    "AlbertModel": ["last_hidden_state", "pooler_output", "hidden_states", "attentions"],
    "AlbertForPreTraining": ["loss", "prediction_logits", "sop_logits", "hidden_states", "attentions"],
    "AlbertForQuestionAnswering": ["loss", "start_logits", "end_logits", "hidden_states"],
}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("cls_name", CLASSES)
def test_transformers_checkpoint_loads_and_matches(tmp_path: Path, variant: str, cls_name: str) -> None:
    torch.manual_seed(0)
    num_labels = 3 if cls_name in ("AlbertForSequenceClassification", "AlbertForTokenClassification") else 2
    kwargs = {**BASE, **VARIANTS[variant], "num_labels": num_labels}
    hf_cls = getattr(transformers, cls_name)
    hf_model = hf_cls(transformers.AlbertConfig(**kwargs, attn_implementation="eager")).eval()
    with torch.no_grad():  # non-zero biases and LayerNorm affine so the comparison means something
        for p in hf_model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    hf_model.save_pretrained(tmp_path / "hf")

    ours = getattr(albert, cls_name).from_pretrained(tmp_path / "hf")
    assert ours.loading_info["missing_keys"] == []
    inputs = make_inputs(cls_name, kwargs["vocab_size"])
    names = OUTPUT_NAMES.get(cls_name, ["loss", "logits", "hidden_states", "attentions"])
    with torch.no_grad():
        expected = hf_model(**inputs, output_hidden_states=True, output_attentions=True)
        got = ours(**inputs, output_hidden_states=True, output_attentions=True)
        compare(got, expected, names)
        # the SDPA path (no attention weights) gives the same outputs
        got_sdpa = ours(**inputs)
        compare(got_sdpa, expected, [n for n in names if n not in ("hidden_states", "attentions")])
        # and so does the model prepared for fp32 inference on the CPU (oneDNN-packed, activation and residual fused)
        prepared = prepare_for_inference(getattr(albert, cls_name).from_pretrained(tmp_path / "hf"),
                                         Runtime(torch.device("cpu"), "fp32"))
        if onednn_available():
            encoder = next(m for m in prepared.modules() if isinstance(m, AlbertTransformer))
            assert isinstance(encoder.prepared_weights[0][0].ffn_w, PackedLinear)
        compare(prepared(**inputs, output_hidden_states=True), expected,
                [n for n in names if n != "attentions"])

    # ours → transformers
    ours.save_pretrained(tmp_path / "ours")
    back = hf_cls.from_pretrained(tmp_path / "ours", attn_implementation="eager").eval()
    with torch.no_grad():
        compare(back(**inputs), expected, [n for n in names if n not in ("hidden_states", "attentions")])


def test_sharing_is_real_and_decoder_tied() -> None:
    cfg = AlbertConfig.from_preset("albert-tiny")
    model = albert.AlbertForPreTraining(cfg)
    assert model.predictions.decoder.weight is model.albert.embeddings.word_embeddings.weight
    assert model.predictions.decoder.bias is model.predictions.bias
    # one layer's parameters exist once whatever num_hidden_layers is
    deeper = albert.AlbertModel(AlbertConfig.from_preset("albert-tiny", num_hidden_layers=12))
    shallow = albert.AlbertModel(AlbertConfig.from_preset("albert-tiny", num_hidden_layers=1))
    assert deeper.num_parameters() == shallow.num_parameters()


@pytest.mark.parametrize(
    "size,count",
    [("base", 11_683_584), ("large", 17_683_968), ("xlarge", 58_724_864), ("xxlarge", 222_595_584)],
)
def test_backbone_parameter_counts(size: str, count: int) -> None:
    for version in ("v1", "v2"):
        with torch.device("meta"):
            model = albert.AlbertModel(AlbertConfig.from_preset(f"albert-{size}-{version}"))
        assert model.num_parameters() == count


def test_multilabel_and_regression_losses_match(tmp_path: Path) -> None:
    torch.manual_seed(0)
    for num_labels, labels in ((1, torch.randn(3)), (4, (torch.rand(3, 4) > 0.5).float())):
        hf = transformers.AlbertForSequenceClassification(transformers.AlbertConfig(**BASE, num_labels=num_labels))
        hf.eval().save_pretrained(tmp_path / str(num_labels))
        ours = albert.AlbertForSequenceClassification.from_pretrained(tmp_path / str(num_labels))
        ids = torch.randint(5, 99, (3, 9))
        with torch.no_grad():
            torch.testing.assert_close(ours(ids, labels=labels).loss, hf(ids, labels=labels).loss)


@pytest.mark.parametrize("groups", [{}, {"num_hidden_groups": 2, "inner_group_num": 2}])
def test_mlm_positions_equal_full_logits_at_those_positions(groups: dict) -> None:
    """With mlm_positions the last layer computes only those positions and [CLS]: the same logits, SOP logits,
    loss and gradients as the whole sequence gathered afterwards (padding included)."""
    torch.manual_seed(0)
    model = albert.AlbertForPreTraining(AlbertConfig.from_preset("albert-tiny", **groups)).eval()
    ids = torch.randint(5, 1000, (2, 16))
    mask = torch.ones(2, 16, dtype=torch.long)
    mask[1, 12:] = 0
    positions = torch.tensor([[1, 5, 7], [2, 3, 0]])
    labels, sop = torch.gather(ids, 1, positions), torch.tensor([0, 1])

    def run(**kwargs: bool) -> tuple[torch.Tensor, ...]:
        model.zero_grad()
        out = model(ids, attention_mask=mask, mlm_positions=positions, labels=labels, sentence_order_label=sop,
                    **kwargs)
        out.loss.backward()
        return out.prediction_logits, out.sop_logits, out.loss, *(p.grad.clone() for p in model.parameters())

    part = run()
    full = run(output_hidden_states=True)  # takes the whole last layer, then gathers
    for a, b in zip(part, full):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        every = model(ids, attention_mask=mask).prediction_logits
        at = positions[..., None].expand(-1, -1, every.shape[-1])
        torch.testing.assert_close(part[0], torch.gather(every, 1, at), rtol=1e-5, atol=1e-6)
        # the masked-LM head (no pooler: the last layer computes the positions alone) — what fill-mask runs
        mlm = albert.AlbertForMaskedLM(model.config).eval()
        mlm.load_state_dict(model.state_dict(), strict=False)
        torch.testing.assert_close(mlm(ids, attention_mask=mask, mlm_positions=positions).logits, part[0],
                                   rtol=1e-5, atol=1e-6)


def test_bf16_autocast_close_to_fp32() -> None:
    torch.manual_seed(0)
    model = albert.AlbertModel(AlbertConfig.from_preset("albert-tiny")).eval()
    ids = torch.randint(5, 1000, (2, 16))
    with torch.no_grad():
        ref = model(ids).last_hidden_state
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(ids).last_hidden_state
    assert low.dtype == torch.bfloat16
    assert (low.float() - ref).abs().max() < 0.1
