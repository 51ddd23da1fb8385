"""What the fast and quantized paths cost in answers: top-1 fill-mask agreement with fp32 on real text.

    python bench/quantized_accuracy.py [--model albert-small-en] [--sentences 1000]

One whole word is masked per sentence of the committed public-domain fixture (seeded choice). Each
contender's top-1 prediction at the mask is compared with PyTorch fp32's: PyTorch bf16 (`freeze_bf16`),
PyTorch dynamic int8 (`quantize_int8`, `--precision int8` in the CLI; and compiled, `--compile`), and ONNX
Runtime on our export in fp32 and in dynamic int8 (`albert export onnx --quantize int8`). Also recorded: how
often each top-1 is the masked word's first piece, the ONNX files' sizes and the largest logit difference from
fp32.
Results: bench/results/quantized_accuracy.json.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import albert
from albert.convert.export import export_onnx
from albert.runtime.freeze import freeze_bf16, quantize_int8
from albert.runtime.kernels import cpu_description
from albert.runtime.policy import Runtime, prepare_for_inference

ROOT = Path(__file__).resolve().parents[1]
TEXT = ROOT / "tests" / "fixtures" / "public_domain.txt"


def masked_sample(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """(sentence with one [MASK], the masked word) for up to n lines of 8+ words."""
    rng = random.Random(seed)
    out = []
    for line in TEXT.read_text(encoding="utf-8").splitlines():
        line = line[:300]  # stays under 128 tokens, so no mask is cut off
        words = list(re.finditer(r"\b[a-zA-Z]{3,}\b", line))
        if len(words) < 8:
            continue
        w = rng.choice(words)
        out.append((line[:w.start()] + "[MASK]" + line[w.end():], w.group()))
        if len(out) == n:
            break
    return out


def logits_at_masks(run: Callable[[dict[str, np.ndarray]], np.ndarray], tok: albert.AlbertTokenizer,
                    texts: list[str]) -> np.ndarray:
    rows = []
    for i in range(0, len(texts), 16):
        batch = tok(texts[i:i + 16], padding=True, truncation=True, max_length=128, return_tensors="np")
        feeds = {k: batch[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
        logits = run(feeds)
        rows.append(logits[feeds["input_ids"] == tok.mask_token_id])
    return np.concatenate(rows).astype(np.float32)


def torch_runner(model: torch.nn.Module) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            out = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits
        return out.float().numpy()
    return run


def onnx_runner(path: Path) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda feeds: session.run(None, feeds)[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="albert-small-en")
    ap.add_argument("--sentences", type=int, default=1000)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "quantized_accuracy.json"))
    a = ap.parse_args()
    tok = albert.AlbertTokenizer.from_pretrained(a.model)
    sample = masked_sample(a.sentences)
    texts = [t for t, _ in sample]
    truth = [tok.convert_tokens_to_ids(tok.tokenize(w)[0]) if tok.tokenize(w) else -1 for _, w in sample]

    def load() -> albert.AlbertForMaskedLM:
        return albert.AlbertForMaskedLM.from_pretrained(a.model).float().eval()

    int8 = Runtime(torch.device("cpu"), "int8")
    with tempfile.TemporaryDirectory() as d:
        onnx32 = export_onnx(load(), Path(d) / "fp32.onnx")
        onnx8 = export_onnx(load(), Path(d) / "int8.onnx", quantize="int8")
        runners = {
            "torch_fp32": torch_runner(load()),
            "torch_bf16": torch_runner(freeze_bf16(load())),
            "torch_int8": torch_runner(quantize_int8(load())),
            "torch_int8_compile": torch_runner(prepare_for_inference(load(), int8, compile=True)),
            "onnxruntime_fp32": onnx_runner(Path(onnx32["path"])),
            "onnxruntime_int8": onnx_runner(Path(onnx8["path"])),
        }
        logits = {name: logits_at_masks(run, tok, texts) for name, run in runners.items()}
    ref = logits["torch_fp32"]
    assert ref.shape[0] == len(texts), "a [MASK] was truncated away"
    top1 = {name: v.argmax(-1) for name, v in logits.items()}
    rows = {}
    for name, v in logits.items():
        rows[name] = {
            "top1_agreement_with_fp32": round(float((top1[name] == top1["torch_fp32"]).mean()), 4),
            "top1_is_masked_word": round(float((top1[name] == np.array(truth)).mean()), 4),
            "max_abs_logit_diff": float(f"{np.abs(v - ref).max():.3g}"),
        }
    rows["onnxruntime_fp32"]["file_mb"] = round(onnx32["bytes"] / 1e6, 1)
    rows["onnxruntime_int8"]["file_mb"] = round(onnx8["bytes"] / 1e6, 1)
    result = {"benchmark": "quantized_accuracy", "model": a.model, "masked_sentences": len(texts),
              "masks": int(ref.shape[0]), "text": str(TEXT.relative_to(ROOT)), "machine": cpu_description(),
              "torch": torch.__version__, "rows": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
