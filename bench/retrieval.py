"""Sentence vectors that find things: find a paragraph among N from its one-line summary.

The pairs are Debian's package descriptions (the one-line summary and the long description's first paragraph,
from apt's Translation-en index, which `apt-get update -o Acquire::Languages=en` fetches): real English, written by
many hands, and in none of the project's corpora. Duplicates (a -dev and a -doc package sharing a paragraph) are
dropped; the N pairs are chosen by a hash of the package name, so every run takes the same ones.

Contenders, in one process, each on the same texts — every one a user would pick for the job: TF-IDF cosine
(scikit-learn, fitted on those texts); a sentence-transformers directory (the teacher, through sentence-transformers);
the same teacher exported to ONNX and fused by ONNX Runtime's transformer optimizer, in fp32 and with dynamic int8
weights (`--onnx`: its own tokenizer, its pooling, the teacher's maximum length); a model2vec static model distilled
from it (`--model2vec DIR`: what `model2vec.distill` wrote; `bench/model2vec_distill.sh` makes one offline); and
albert models through albert's feature-extraction pipeline (what `albert embed` runs) at each of `--precisions`.
Each reports recall@1, recall@10, MRR, vectors per second over all 2N texts (medians of alternating rounds),
parameters and the bytes of its weights on disk.

    python bench/retrieval.py --teacher DIR [--onnx] [--model2vec DIR] --albert albert-small-en-embed \
        [--albert DIR ...] [--precisions auto int8] [--out FILE]
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from albert.runtime.kernels import cpu_description

INDEX = "/var/lib/apt/lists/*_debian_dists_*_main_i18n_Translation-en*"


def debian_pairs(n: int, min_words: int = 25) -> list[tuple[str, str]]:
    """(summary, paragraph) pairs of Debian packages, `n` of them, always the same ones."""
    files = sorted(glob.glob(INDEX))
    if not files:
        raise SystemExit("no Translation-en index: run apt-get update -o Acquire::Languages=en")
    text = "".join(subprocess.run(["lz4cat", f] if f.endswith(".lz4") else ["cat", f], capture_output=True,
                                  text=True, check=True).stdout for f in files)
    pairs: dict[str, tuple[str, str]] = {}
    seen_paragraphs: set[str] = set()
    seen_summaries: set[str] = set()
    for block in text.split("\n\n"):
        lines = block.splitlines()
        name = next((x.removeprefix("Package: ") for x in lines if x.startswith("Package: ")), None)
        start = next((i for i, x in enumerate(lines) if x.startswith("Description-en: ")), None)
        if name is None or start is None:
            continue
        summary = lines[start].removeprefix("Description-en: ").strip()
        body = []
        for line in lines[start + 1:]:
            if not line.startswith(" ") or line.strip() == ".":
                break
            body.append(line.strip())
        paragraph = " ".join(body)
        if len(paragraph.split()) < min_words or paragraph in seen_paragraphs or summary in seen_summaries:
            continue
        seen_paragraphs.add(paragraph)
        seen_summaries.add(summary)
        pairs[name] = (summary, paragraph)
    chosen = sorted(pairs, key=lambda p: hashlib.sha256(p.encode()).hexdigest())[:n]
    return [pairs[p] for p in chosen]


def scores(queries: np.ndarray, documents: np.ndarray) -> dict[str, float]:
    """Recall@1, recall@10 and MRR of finding document i for query i by cosine similarity."""
    q = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    d = documents / np.maximum(np.linalg.norm(documents, axis=1, keepdims=True), 1e-12)
    sims = q @ d.T
    rank = (sims > sims[np.arange(len(q)), np.arange(len(q))][:, None]).sum(1)  # 0: found first
    return {"recall@1": round(float((rank < 1).mean()), 4), "recall@10": round(float((rank < 10).mean()), 4),
            "mrr": round(float((1.0 / (rank + 1)).mean()), 4)}


def embedder(kind: str, where: str, precision: str, work: Path) -> tuple[Any, dict[str, Any]]:
    """texts → an (n, d) array, for one contender; and its size: parameters and the bytes of its weights."""
    if kind == "tfidf":
        from sklearn.feature_extraction.text import TfidfVectorizer

        def tfidf(texts: list[str]) -> np.ndarray:
            return TfidfVectorizer(sublinear_tf=True).fit_transform(texts).toarray()  # fitted on the texts themselves
        return tfidf, {}
    if kind == "sentence-transformers":
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(where, device="cpu")
        size = {"parameters": sum(p.numel() for p in model.parameters()), "bytes": _weight_bytes(Path(where))}
        return (lambda texts: model.encode(texts, convert_to_numpy=True)), size
    if kind.startswith("onnx"):
        return onnx_teacher(Path(where), kind.endswith("int8"), work)
    if kind == "model2vec":
        from model2vec import StaticModel

        static = StaticModel.from_pretrained(where)
        size = {"parameters": int(static.embedding.size), "bytes": _weight_bytes(Path(where))}
        return (lambda texts: static.encode(texts)), size
    import albert
    from albert.io.hub import resolve_model_dir

    pipe = albert.pipeline("feature-extraction", model=where, device="cpu", precision=precision)
    size = {"parameters": sum(p.numel() for p in pipe.model.parameters()),
            "bytes": _weight_bytes(resolve_model_dir(where))}
    return (lambda texts: np.array(pipe(texts))), size


def _weight_bytes(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.rglob("*") if f.suffix in (".safetensors", ".bin", ".onnx")
               and f.is_file())


def onnx_teacher(teacher: Path, int8: bool, work: Path) -> tuple[Any, dict[str, Any]]:
    """A sentence-transformers teacher as a user deploys it on ONNX Runtime: its transformer exported (TorchScript
    exporter), fused by onnxruntime.transformers.optimizer (model_type bert), with dynamic int8 weights for `int8`;
    its fast tokenizer at the teacher's maximum length, its pooling (mean over the tokens, as all-MiniLM-L6-v2's
    1_Pooling says) in NumPy."""
    import onnx
    import torch
    import transformers
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    st = SentenceTransformer(str(teacher), device="cpu")
    pooling = json.loads((teacher / "1_Pooling" / "config.json").read_text())
    if not pooling.get("pooling_mode_mean_tokens"):
        raise SystemExit(f"{teacher}: the ONNX contender pools by the mean, as the teacher should")
    fused = work / "teacher-fused.onnx"
    if not fused.exists():
        class Encoder(torch.nn.Module):  # the three inputs by name: BertModel's positional order changed in 5.x
            def __init__(self) -> None:
                super().__init__()
                self.bert = transformers.AutoModel.from_pretrained(str(teacher)).eval()

            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
                return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                                 token_type_ids=token_type_ids).last_hidden_state

        bert = Encoder().eval()
        example = (torch.ones(1, 16, dtype=torch.long),) * 2 + (torch.zeros(1, 16, dtype=torch.long),)
        axes = {0: "batch", 1: "sequence"}
        names = ["input_ids", "attention_mask", "token_type_ids"]
        torch.onnx.export(bert, example, str(work / "teacher.onnx"), input_names=names,
                          output_names=["last_hidden_state"], dynamic_axes={k: axes for k in
                                                                            (*names, "last_hidden_state")},
                          opset_version=17, dynamo=False)
        cfg = bert.bert.config
        optimize_model(str(work / "teacher.onnx"), model_type="bert", num_heads=cfg.num_attention_heads,
                       hidden_size=cfg.hidden_size).save_model_to_file(str(fused))
        quantize_dynamic(str(fused), str(work / "teacher-fused-int8.onnx"), weight_type=QuantType.QInt8,
                         per_channel=True, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    path = work / ("teacher-fused-int8.onnx" if int8 else "teacher-fused.onnx")
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer.from_file(str(teacher / "tokenizer.json"))
    tokenizer.enable_truncation(st.max_seq_length)
    tokenizer.enable_padding()

    def encode(texts: list[str], batch: int = 32) -> np.ndarray:
        out = []
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # length-sorted, as sentence-transformers
        for start in range(0, len(texts), batch):
            rows = tokenizer.encode_batch([texts[i] for i in order[start:start + batch]])
            ids = np.array([r.ids for r in rows], dtype=np.int64)
            mask = np.array([r.attention_mask for r in rows], dtype=np.int64)
            hidden = session.run(None, {"input_ids": ids, "attention_mask": mask,
                                        "token_type_ids": np.zeros_like(ids)})[0]
            out.append((hidden * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1))
        vectors = np.concatenate(out)
        result = np.empty_like(vectors)
        result[order] = vectors
        return result
    return encode, {"parameters": sum(p.numel() for p in st.parameters()), "bytes": path.stat().st_size}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=3000)
    p.add_argument("--teacher", action="append", default=[], help="a sentence-transformers directory (repeatable)")
    p.add_argument("--albert", action="append", default=[], help="an albert model name or directory (repeatable)")
    p.add_argument("--precisions", nargs="+", default=["auto"], help="albert's precisions, each a contender")
    p.add_argument("--onnx", action="store_true", help="the (first) teacher through ONNX Runtime, fused, fp32 and int8")
    p.add_argument("--model2vec", action="append", default=[], help="a model2vec static model directory (repeatable)")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per contender, alternating")
    p.add_argument("--out", default="bench/results/retrieval.json")
    a = p.parse_args()
    pairs = debian_pairs(a.pairs)
    queries, documents = [q for q, _ in pairs], [d for _, d in pairs]
    contenders = [("tfidf", "tfidf", "", "")] + [(f"st:{t}", "sentence-transformers", t, "") for t in a.teacher]
    if a.onnx and a.teacher:
        contenders += [(f"onnxruntime fused {v}:{a.teacher[0]}", f"onnx-{v}", a.teacher[0], "")
                       for v in ("fp32", "int8")]
    contenders += [(f"model2vec:{m}", "model2vec", m, "") for m in a.model2vec]
    contenders += [(f"albert:{m} {prec}", "albert", m, prec) for m in a.albert for prec in a.precisions]
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="retrieval-"))
    embed, sizes = {}, {}
    for name, kind, where, precision in contenders:
        embed[name], sizes[name] = embedder(kind, where, precision, work)
    results: dict[str, dict[str, Any]] = {}
    times: dict[str, list[float]] = {name: [] for name in embed}
    for round_ in range(a.rounds):
        for name, fn in embed.items():
            start = time.perf_counter()
            if name == "tfidf":  # one fit over both sides: a shared vocabulary
                both = fn(queries + documents)
                q, d = both[:len(queries)], both[len(queries):]
            else:
                q, d = fn(queries), fn(documents)
            times[name].append(time.perf_counter() - start)
            if round_ == 0:
                results[name] = scores(q, d)
            print(name, round_, results[name], f"{times[name][-1]:.1f}s", flush=True)
    for name in results:
        results[name]["vectors_per_s"] = round(2 * len(pairs) / statistics.median(times[name]), 1)
        results[name].update(sizes[name])
    out = {"cpu": cpu_description(), "pairs": len(pairs), "source": "Debian bookworm Translation-en: package "
           "summary → first paragraph of its long description", "rounds": a.rounds,
           "results": results}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
