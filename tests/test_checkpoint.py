"""Checkpoint loading: every transformers layout, reports of missing/unexpected weights, name resolution."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import save_file

import albert
from albert import AlbertConfig
from albert.errors import CheckpointError, ConfigError
from albert.modeling.pretrained import resolve_model_dir

SMALL = dict(vocab_size=99, embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
             intermediate_size=37, max_position_embeddings=64)


def hf_dir(tmp_path: Path, cls_name: str = "AlbertForPreTraining", safe: bool = True) -> tuple[Path, object]:
    torch.manual_seed(0)
    model = getattr(transformers, cls_name)(transformers.AlbertConfig(**SMALL)).eval()
    out = tmp_path / f"{cls_name}_{safe}"
    model.save_pretrained(out)
    if not safe:  # a pytorch_model.bin as older transformers wrote them (5 writes safetensors only)
        (out / "model.safetensors").unlink()
        torch.save(model.state_dict(), out / "pytorch_model.bin")
    return out, model


def test_pytorch_bin_loads_with_weights_only(tmp_path: Path) -> None:
    path, hf = hf_dir(tmp_path, safe=False)
    assert (path / "pytorch_model.bin").is_file() and not (path / "model.safetensors").exists()
    ours = albert.AlbertForPreTraining.from_pretrained(path)
    ids = torch.randint(5, 99, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).prediction_logits, hf(ids).prediction_logits)


def test_bin_with_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil"
    path.mkdir()
    AlbertConfig(**SMALL).to_json_file(path / "config.json")

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    torch.save({"x": Payload()}, path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="cannot read weights"):
        albert.AlbertModel.from_pretrained(path)


def test_head_weights_missing_and_unexpected_are_reported(tmp_path: Path, caplog) -> None:
    path, _ = hf_dir(tmp_path, "AlbertModel")
    with caplog.at_level(logging.WARNING):
        clf = albert.AlbertForSequenceClassification.from_pretrained(path, num_labels=3)
    assert clf.loading_info["missing_keys"] == ["classifier.bias", "classifier.weight"]
    assert "newly initialised" in caplog.text
    head_path, _ = hf_dir(tmp_path, "AlbertForPreTraining")
    bare = albert.AlbertModel.from_pretrained(head_path)
    assert bare.loading_info["missing_keys"] == []
    assert "sop_classifier.classifier.weight" in bare.loading_info["unexpected_keys"]


def test_many_ignored_weights_are_named_by_their_group(caplog) -> None:
    """Fewer groups than the checkpoint's (a shallower student): a line naming the groups, not each weight."""
    with caplog.at_level(logging.WARNING):
        model = albert.AlbertModel.from_pretrained("albert-small-en-embed", num_hidden_layers=2, num_hidden_groups=2)
    assert len(model.loading_info["unexpected_keys"]) == 32
    assert "ignored checkpoint weights: encoder.albert_layer_groups.2.* (16 weights), " \
           "encoder.albert_layer_groups.3.* (16 weights)" in caplog.text


def test_sharded_safetensors(tmp_path: Path) -> None:
    model = albert.AlbertModel(AlbertConfig(**SMALL))
    state = model.state_dict()
    keys = sorted(state)
    out = tmp_path / "sharded"
    out.mkdir()
    model.config.to_json_file(out / "config.json")
    halves = {"model-00001-of-00002.safetensors": keys[: len(keys) // 2],
              "model-00002-of-00002.safetensors": keys[len(keys) // 2:]}
    for name, ks in halves.items():
        save_file({k: state[k].contiguous() for k in ks}, str(out / name))
    index = {"weight_map": {k: name for name, ks in halves.items() for k in ks}}
    (out / "model.safetensors.index.json").write_text(json.dumps(index))
    loaded = albert.AlbertModel.from_pretrained(out)
    for k, v in loaded.state_dict().items():
        torch.testing.assert_close(v, state[k])


def test_shape_mismatch_is_a_clear_error(tmp_path: Path) -> None:
    path, _ = hf_dir(tmp_path, "AlbertModel")
    with pytest.raises(CheckpointError, match="shape mismatch"):
        albert.AlbertModel.from_pretrained(path, config=AlbertConfig(**{**SMALL, "hidden_size": 64}))


def test_names_resolve_offline_with_one_clear_error(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for name in ("albert-base-v2", "albert/albert-base-v2", "no-such/model"):
        with pytest.raises(CheckpointError) as e:
            resolve_model_dir(name)
        msg = str(e.value)
        assert "no local directory" in msg and "hub id" in msg
    assert "'albert/albert-base-v2'" in str(pytest.raises(CheckpointError, resolve_model_dir, "albert-base-v2").value)
    with pytest.raises(CheckpointError, match="is a file"):
        (tmp_path / "f").write_text("x")
        resolve_model_dir(tmp_path / "f")


def test_config_json_round_trip_and_errors(tmp_path: Path) -> None:
    cfg = AlbertConfig.from_preset("albert-large-v1", num_labels=3, id2label={0: "a", 1: "b", 2: "c"})
    cfg.to_json_file(tmp_path / "c.json")
    again = AlbertConfig.from_json_file(tmp_path / "c.json")
    assert again == cfg and again.label2id == {"a": 0, "b": 1, "c": 2}
    theirs = transformers.AlbertConfig.from_json_file(str(tmp_path / "c.json"))
    assert theirs.hidden_size == 1024 and theirs.hidden_act == "gelu" and theirs.num_labels == 3
    legacy = {**transformers.AlbertConfig(**SMALL).to_dict(), "net_structure_type": 0, "gap_size": 0,
              "num_memory_blocks": 0, "down_scale_factor": 1}
    assert AlbertConfig.from_dict(legacy).hidden_size == 32
    with pytest.raises(ConfigError, match="divisible by num_attention_heads"):
        AlbertConfig(hidden_size=30, num_attention_heads=4)
    with pytest.raises(ConfigError, match="divisible by num_hidden_groups"):
        AlbertConfig(num_hidden_layers=5, num_hidden_groups=2)
    with pytest.raises(ConfigError, match="unknown activation"):
        AlbertConfig(hidden_act="gelu_fast_and_wrong")
    with pytest.raises(ConfigError, match="unknown config key"):
        AlbertConfig.from_dict({"hiden_size": 3})
    with pytest.raises(ConfigError, match="unknown preset"):
        AlbertConfig.from_preset("albert-huge-v3")


def test_official_presets_match_reference_table() -> None:
    expected = {"base": (768, 12, 12, 3072), "large": (1024, 24, 16, 4096), "xlarge": (2048, 24, 16, 8192),
                "xxlarge": (4096, 12, 64, 16384)}
    for size, (h, layers, heads, inter) in expected.items():
        for v, act, drop in (("v1", "gelu", 0.1 if size != "xxlarge" else 0.0), ("v2", "gelu_new", 0.0)):
            c = AlbertConfig.from_preset(f"albert-{size}-{v}")
            assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size) == (
                h, layers, heads, inter)
            assert c.hidden_act == act and c.hidden_dropout_prob == drop == c.attention_probs_dropout_prob
            assert (c.vocab_size, c.embedding_size, c.max_position_embeddings, c.classifier_dropout_prob) == (
                30000, 128, 512, 0.1)


def test_lenient_config_json_of_checkpoints(tmp_path: Path) -> None:
    path, hf = hf_dir(tmp_path, "AlbertForTokenClassification")
    data = json.loads((path / "config.json").read_text())
    data.update({"classifier_dropout_prob": None, "output_past": True, "some_future_key": 1})
    (path / "config.json").write_text(json.dumps(data))
    model = albert.AlbertForTokenClassification.from_pretrained(path)
    assert model.config.head_dropout == model.config.hidden_dropout_prob
    assert model.config.extra["some_future_key"] == 1
    with pytest.raises(ConfigError, match="unknown config key"):
        AlbertConfig.from_json_file(path / "config.json")  # strict for hand-written configs
