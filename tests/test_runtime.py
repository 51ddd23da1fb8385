"""The prepared matrices of albert.runtime.policy against the plain torch they replace: oneDNN-packed fp32 with each
fused
activation and the fused residual add equal torch's within fp32 rounding; the int8 matrix with its activation fused
and the residual gives what torch's own dynamic int8 matrix followed by them gives."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

import albert
from albert.modeling.backbone import activation_fn
from albert.runtime.kernels import (
    ONEDNN_ACTIVATIONS,
    Int8Linear,
    _dynamic_int8,
    _int8,
    _onednn,
    onednn_available,
    onednn_int8_available,
)
from albert.runtime.policy import keep_freed_memory

pytestmark = pytest.mark.skipif(not onednn_available(), reason="torch built without oneDNN")


def tiny_config() -> albert.AlbertConfig:
    return albert.AlbertConfig(vocab_size=100, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                               num_attention_heads=2, intermediate_size=64, max_position_embeddings=32)


def weights(rows: int, cols: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, cols, generator=g) / cols ** 0.5, torch.randn(rows, generator=g) * 0.1


@pytest.mark.parametrize("name", sorted(ONEDNN_ACTIVATIONS))
@pytest.mark.parametrize("shape", [(1, 1, 64), (3, 17, 64), (40, 64)])
def test_packed_fp32_equals_torch(name: str, shape: tuple[int, ...]) -> None:
    w, b = weights(96, 64)
    x = torch.randn(*shape) * 2
    with torch.inference_mode():
        want = activation_fn(name)(F.linear(x, w, b))
        got = _onednn(w, b, ONEDNN_ACTIVATIONS[name])(x)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        plain = _onednn(w, b)
        torch.testing.assert_close(plain(x), F.linear(x, w, b), atol=1e-5, rtol=1e-5)
        residual = torch.randn(*shape[:-1], 96)
        torch.testing.assert_close(plain(x, residual), residual + F.linear(x, w, b), atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not onednn_int8_available(), reason="no oneDNN int8 kernels")
@pytest.mark.parametrize("name", ["gelu_new", "gelu", "relu"])
def test_int8_equals_torch_dynamic_int8(name: str) -> None:
    """oneDNN's int8 kernel, and fbgemm's that Int8Linear takes for a few rows on CPUs without VNNI (`few_rows`),
    each on every CPU: the same quantization as torch's dynamic int8, the activation and the residual as fused."""
    torch.backends.quantized.engine = "onednn"
    w, b = weights(96, 64, seed=1)
    x = torch.randn(2, 9, 64) * 3 + 0.5  # not centred: the zero point is not the middle
    with torch.inference_mode():
        prepared = _int8(w, b, ONEDNN_ACTIVATIONS[name])
        assert isinstance(prepared, Int8Linear)
        want = activation_fn(name)(_dynamic_int8(w, b)(x))
        exact = activation_fn(name)(F.linear(x, w, b))
        for few_rows in (None, _dynamic_int8(w, b)):
            fused = dataclasses.replace(prepared, few_rows=few_rows)
            got = fused(x)
            # the same quantization as torch's dynamic int8 path: equal up to the kernels' own rounding
            torch.testing.assert_close(got, want, atol=2e-3, rtol=1e-3)
            assert (got - exact).abs().max() < 0.05 * exact.abs().max()
            residual = torch.randn(2, 9, 96)
            kept = residual.clone()
            plain = dataclasses.replace(_int8(w, b), few_rows=few_rows)
            torch.testing.assert_close(plain(x, residual), residual + _dynamic_int8(w, b)(x), atol=2e-3, rtol=1e-3)
            assert torch.equal(residual, kept)  # added into the output, not into the residual (a hidden state)


@pytest.mark.skipif(not onednn_int8_available(), reason="no oneDNN int8 kernels")
def test_int8_without_onednn_kernels_falls_back_to_torch_dynamic_int8(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where torch has no oneDNN int8 kernels (builds for other CPUs) int8 runs torch's dynamic int8 matrices, the
    activation a separate pass, and gives what the oneDNN path gives up to the kernels' rounding."""
    from albert.runtime import freeze as runtime
    from albert.runtime.kernels import DynamicInt8Linear

    torch.manual_seed(0)
    model = albert.AlbertModel(tiny_config()).eval()
    ids = torch.randint(5, 100, (2, 9))
    with torch.inference_mode():
        exact = model(ids).last_hidden_state
        onednn = runtime.quantize_int8(model)
        want = onednn(ids).last_hidden_state
        monkeypatch.setattr(runtime, "onednn_int8_available", lambda: False)
        fallback = runtime.quantize_int8(model)
        w = fallback.encoder.prepared_weights[0][0]
        assert isinstance(w.ffn_w, DynamicInt8Linear) and not w.ffn_activated and runtime.is_int8(fallback)
        got = fallback(ids).last_hidden_state
    torch.testing.assert_close(got, want, atol=0.02, rtol=0)
    assert (got - exact).abs().max() < 0.1


@pytest.mark.parametrize("kind", ["fp32", "int8", "dynamic_int8"])
def test_prepared_matrices_take_strided_residuals_and_empty_batches(kind: str) -> None:
    """A residual that is not dense rows is added as it is (oneDNN's int8 kernel read one as garbage), and a batch
    of no rows gives no rows (int8's quantizer refused it)."""
    if kind == "int8" and not onednn_int8_available():
        pytest.skip("no oneDNN int8 kernels")
    w, b = weights(96, 64, seed=2)
    matrix = {"fp32": _onednn, "int8": _int8, "dynamic_int8": _dynamic_int8}[kind](w, b)
    x = torch.randn(5, 3, 64)
    residual = torch.randn(3, 5, 96).transpose(0, 1)  # (5, 3, 96), strided
    with torch.inference_mode():
        torch.testing.assert_close(matrix(x, residual), matrix(x) + residual, atol=1e-5, rtol=1e-5)
        assert matrix(torch.randn(0, 7, 64)).shape == (0, 7, 96)
        assert matrix(torch.randn(0, 7, 64), torch.randn(0, 7, 96)).shape == (0, 7, 96)


@pytest.mark.parametrize("precision", ["fp32", "int8", "bf16"])
def test_a_batch_of_no_rows_gives_no_rows(precision: str) -> None:
    from albert.runtime.policy import Runtime, prepare_for_inference

    model = prepare_for_inference(albert.AlbertModel(tiny_config()).eval(), Runtime(torch.device("cpu"), precision))
    with torch.inference_mode():
        out = model(torch.zeros(0, 8, dtype=torch.long), torch.zeros(0, 8, dtype=torch.long))
    assert out.last_hidden_state.shape == (0, 8, 32) and out.pooler_output.shape == (0, 32)


def test_keep_freed_memory_is_harmless() -> None:
    keep_freed_memory()
    keep_freed_memory()  # once per process (cached); allocation still works
    assert torch.ones(1 << 22).sum().item() == 1 << 22


def test_finite_check_finds_any_nan_or_infinity() -> None:
    from albert.runtime.kernels import _finite

    assert _finite(torch.randn(1000)) and _finite(torch.empty(0)) and _finite(torch.randn(10).bfloat16())
    for n in (1, 17, 4097):
        for pos in {0, n // 2, n - 1}:
            for bad in (float("nan"), float("inf"), -float("inf")):
                t = torch.randn(n, 3)
                t[pos, 1] = bad
                assert not _finite(t) and not _finite(t[:, 1]) and not _finite(t.bfloat16())


@pytest.mark.skipif(not onednn_int8_available(), reason="no oneDNN int8 kernels")
def test_compiled_int8_and_fp32_give_the_eager_outputs() -> None:
    """`--compile` (prepare_for_inference(compile=True)): int8 quantizes inside the graph as the eager path does
    (equal up to the rounding of a scale computed in fp32 rather than fp64), fp32 gives the eager outputs within fp32
    rounding; a new length and padding run without error, and broken weights still give the finite check's error,
    not NaN."""
    from albert.errors import CheckpointError
    from albert.runtime.policy import Runtime, prepare_for_inference

    cpu = torch.device("cpu")
    torch.manual_seed(0)
    base = albert.AlbertModel(tiny_config()).eval()
    ids = torch.randint(5, 100, (2, 9))
    padded = torch.ones_like(ids)
    padded[1, 6:] = 0
    for precision, atol in (("int8", 0.05), ("fp32", 1e-5)):
        runtime = Runtime(cpu, precision)  # type: ignore[arg-type]

        def prepared(compile: bool, runtime: Runtime = runtime) -> albert.AlbertModel:
            model = albert.AlbertModel(tiny_config()).eval()
            model.load_state_dict(base.state_dict())
            return prepare_for_inference(model, runtime, compile)

        eager, compiled = prepared(False), prepared(True)
        with torch.inference_mode():
            for x, mask in ((ids, None), (ids, padded), (ids[:1, :5], None)):
                want, got = eager(x, mask), compiled(x, mask)
                torch.testing.assert_close(got.last_hidden_state, want.last_hidden_state, atol=atol, rtol=0)
                torch.testing.assert_close(got.pooler_output, want.pooler_output, atol=atol, rtol=0)
            w = compiled.encoder.prepared_weights[0][0].ln1_w
            w[3] = float("nan")
            with pytest.raises(CheckpointError, match="non-finite"):
                compiled(ids)
