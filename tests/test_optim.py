"""LAMB against one step computed by hand, parameter groups, and the schedule."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from albert.train.optim import Lamb, build_optimizer, lr_lambda, param_groups


def test_lamb_step_by_hand() -> None:
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(4, 3))
    b = nn.Parameter(torch.randn(3))
    opt = Lamb([{"params": [w], "weight_decay": 0.01, "adapt": True},
                {"params": [b], "weight_decay": 0.0, "adapt": False}], lr=0.1, betas=(0.9, 0.999), eps=1e-6)
    w0, b0 = w.detach().numpy().copy(), b.detach().numpy().copy()
    m_w, v_w = np.zeros_like(w0), np.zeros_like(w0)
    m_b, v_b = np.zeros_like(b0), np.zeros_like(b0)
    for _ in range(3):
        gw, gb = np.random.randn(*w0.shape).astype(np.float32), np.random.randn(*b0.shape).astype(np.float32)
        w.grad, b.grad = torch.from_numpy(gw.copy()), torch.from_numpy(gb.copy())
        opt.step()
        # by hand: no bias correction; trust ratio ||w|| / ||update|| for the decayed weight only
        m_w = 0.9 * m_w + 0.1 * gw
        v_w = 0.999 * v_w + 0.001 * gw**2
        u = m_w / (np.sqrt(v_w) + 1e-6) + 0.01 * w0
        w0 = w0 - 0.1 * (np.linalg.norm(w0) / np.linalg.norm(u)) * u
        m_b = 0.9 * m_b + 0.1 * gb
        v_b = 0.999 * v_b + 0.001 * gb**2
        b0 = b0 - 0.1 * m_b / (np.sqrt(v_b) + 1e-6)
        np.testing.assert_allclose(w.detach().numpy(), w0, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b.detach().numpy(), b0, rtol=1e-5, atol=1e-6)


def test_zero_weight_uses_ratio_one() -> None:
    w = nn.Parameter(torch.zeros(3))
    opt = Lamb([w], lr=0.5, weight_decay=0.0)
    w.grad = torch.ones(3)
    opt.step()
    torch.testing.assert_close(w.detach(), torch.full((3,), -0.5 * 0.1 / (np.sqrt(0.001) + 1e-6)))


def test_layernorm_and_bias_excluded_from_decay() -> None:
    from albert import AlbertConfig, AlbertForPreTraining

    model = AlbertForPreTraining(AlbertConfig.from_preset("albert-tiny"))
    decay, no_decay = param_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all("LayerNorm" in names[id(p)] or "layer_norm" in names[id(p)] or "bias" in names[id(p)]
               for p in no_decay["params"])
    assert not any("bias" in names[id(p)] or "LayerNorm" in names[id(p)] for p in decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert isinstance(build_optimizer(model, "adamw", 1e-3, 0.01, (0.9, 0.999), 1e-6), torch.optim.AdamW)


def test_schedule() -> None:
    f = lr_lambda(10, 100, "linear")
    assert f(0) == 0.1 and f(9) == 1.0
    assert abs(f(50) - 0.5) < 1e-9 and f(100) == 0.0
    assert lr_lambda(0, 100, "constant")(70) == 1.0
    assert abs(lr_lambda(0, 100, "polynomial", 2.0)(50) - 0.25) < 1e-9
