"""Original TensorFlow checkpoints (written by real TensorFlow: tests/fixtures/make_tf_checkpoints.py) read
without TensorFlow and converted under the original variable names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import albert
from albert.convert.tf import convert_tf_checkpoint, read_tf_checkpoint, tf_to_ours
from albert.errors import CheckpointError

TF = Path(__file__).parent / "fixtures" / "tf"


def tf_reference(name: str) -> dict[str, np.ndarray]:
    """What TensorFlow's own reader returned for every variable."""
    with np.load(TF / f"{name}.npz") as z:
        return {k.replace("|", "/"): z[k] for k in z.files}


@pytest.mark.parametrize("name", ["albert", "hub", "e_eq_h"])
def test_reader_equals_tensorflow(name: str) -> None:
    ours = read_tf_checkpoint(TF / name)
    ref = tf_reference(name)
    assert set(ours) == set(ref)
    for k, v in ref.items():
        np.testing.assert_array_equal(ours[k], v)


@pytest.mark.parametrize("name", ["albert", "hub", "e_eq_h"])
def test_convert_maps_every_weight(name: str, tmp_path: Path) -> None:
    info = convert_tf_checkpoint(TF / name, TF / f"{name}.config.json", tmp_path / "out")
    assert info["unknown"] == [] and info["initialised"] == []
    assert "global_step" in info["skipped"] and any(k.endswith("/adam_m") for k in info["skipped"])
    model = albert.AlbertForPreTraining.from_pretrained(tmp_path / "out")
    state = model.state_dict()
    for tf_name, array in tf_reference(name).items():
        target = tf_to_ours(tf_name)
        if target is None:
            continue
        key, transpose = target
        torch.testing.assert_close(state[key], torch.from_numpy(array.T if transpose else array))
    if name == "e_eq_h":  # no projection in the original when E == H: identity
        torch.testing.assert_close(state["albert.encoder.embedding_hidden_mapping_in.weight"], torch.eye(32))
    assert model.config.hidden_act == "gelu_new"  # the original's gelu is the tanh form
    import transformers
    theirs = transformers.AlbertForPreTraining.from_pretrained(tmp_path / "out").eval()
    ids = torch.randint(5, 99, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(model(ids).prediction_logits, theirs(ids).prediction_logits, atol=1e-5,
                                   rtol=1e-4)


def test_cli_and_errors(tmp_path: Path, albert_cli: Any) -> None:
    out = subprocess.run([sys.executable, "-m", "albert.cli", "convert", "--from-tf", str(TF / "albert"), "--config",
                          str(TF / "albert.config.json"), "--out", str(tmp_path / "o")], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "o" / "model.safetensors").is_file()
    again = albert_cli("convert", "--from-tf", str(TF / "albert"), "--config", str(TF / "albert.config.json"), "--out",
                       str(tmp_path / "o"))
    assert again.returncode == 2 and "is not empty (config.json, model.safetensors)" in again.stderr
    with pytest.raises(CheckpointError, match="no TensorFlow checkpoint"):
        read_tf_checkpoint(tmp_path / "nothing")
    (tmp_path / "bad.index").write_bytes(b"x" * 100)
    with pytest.raises(CheckpointError, match="not a TensorFlow checkpoint index"):
        read_tf_checkpoint(tmp_path / "bad")
    bad = albert_cli("convert", "--from-tf", str(tmp_path / "nothing"), "--config", str(TF / "albert.config.json"),
                     "--out", str(tmp_path / "p"))
    assert bad.returncode == 2 and bad.stderr.startswith("albert: error:")
