"""Sentence-vector distillation (Reimers & Gurevych 2020, across tokenizers): the student reads each text with its
own tokenizer and its mean-pooled vector — what `albert embed` computes — regresses onto the teacher's vector of the
same text (MSE), optionally with an in-batch similarity term and a relation term among neighbours. The teacher's
vectors are computed once and cached on disk under the teacher's and the texts' SHA-256, so a resumed or repeated
run reads them instead of recomputing them."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from albert.errors import ConfigError, DataError
from albert.inference.hidden_states import last_states
from albert.io.files import MAX_MODEL_JSON_BYTES, read_model_json
from albert.modeling.backbone import pool_hidden_states
from albert.modeling.pretrained import AlbertModel, check_weights, read_state_dict
from albert.tasks.batching import pad_batch
from albert.tokenization.tokenizer import AlbertTokenizer
from albert.train.distill_settings import DistillSettings
from albert.train.loop import EpochOrder

logger = logging.getLogger(__name__)


def weights_sha256(path: Path) -> str:
    """The SHA-256 of a model's weights: its model.safetensors (or pytorch_model.bin) as published, else of all its
    weight files together (names and bytes), or of `path` itself when it is a file; `path` may also name a packaged
    model or a hub id."""
    if not path.exists():
        from albert.io.hub import resolve_model_dir

        path = resolve_model_dir(str(path))
    if path.is_dir():
        single = [path / n for n in ("model.safetensors", "pytorch_model.bin") if (path / n).is_file()]
        files = single[:1] or sorted(p for p in path.rglob("*") if p.suffix in (".safetensors", ".bin") and p.is_file())
    else:
        files = [path]
    if not files:
        raise ConfigError(f"{path}: no weight files (.safetensors or .bin)")
    h = hashlib.sha256()
    for f in files:
        if len(files) > 1:
            h.update(f.name.encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def vector_teacher(teacher: str, max_seq_length: int) -> Any:
    """texts → (n, d) float32 array: a sentence-transformers directory through sentence-transformers, else an albert
    model's mean vectors (as `albert embed` pools them)."""
    if (Path(teacher) / "modules.json").exists():
        check_st_modules(Path(teacher))
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ConfigError("a sentence-transformers teacher needs the package: pip install "
                              "'albert-lm[sentence-transformers]'") from None
        try:
            st = SentenceTransformer(teacher, device="cpu")
        except Exception as e:  # its loader's faults are many (TypeError, SafetensorError, OSError...): one line
            raise ConfigError(f"{teacher}: sentence-transformers cannot load this teacher: "
                              f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}") from None
        st.max_seq_length = max_seq_length
        return lambda texts: st.encode(texts, convert_to_numpy=True, batch_size=64).astype(np.float32)
    from albert.runtime.policy import Runtime, prepare_for_inference

    model = prepare_for_inference(AlbertModel.from_pretrained(teacher), Runtime(torch.device("cpu"), "fp32"))
    tokenizer = AlbertTokenizer.from_pretrained(teacher)

    def encode(texts: list[str]) -> np.ndarray:
        return np.concatenate([pool_hidden_states(hidden, mask).float().numpy()
                               for hidden, mask in last_states(model, tokenizer, texts, max_seq_length)])
    return encode


def check_st_modules(teacher: Path) -> None:
    """A sentence-transformers directory's modules.json, before sentence-transformers reads it: a list of modules,
    each one of sentence-transformers' own types (a type it would import from elsewhere — `os.system`, a
    `modeling_*.py` beside the weights — is refused, never imported) at a path inside the directory, its weights
    (where it has them) read as albert reads its own: whole, floating point, finite."""
    path = teacher / "modules.json"
    modules = read_model_json(path)
    if not isinstance(modules, list) or not modules or not all(isinstance(m, dict) for m in modules):
        raise ConfigError(f"{path}: must be a list of modules (objects with 'type' and 'path')")
    root = teacher.resolve()
    for n, module in enumerate(modules):
        kind, where = module.get("type"), module.get("path", "")
        name = kind.rpartition(".")[2] if isinstance(kind, str) else None
        if not isinstance(kind, str) or not kind.startswith("sentence_transformers.") or name not in ST_MODULES:
            raise ConfigError(f"{path}: module {n}'s type {kind!r} is not one of sentence-transformers' own "
                              f"({', '.join(sorted(ST_MODULES))}); refused, nothing imported")
        if not isinstance(where, str) or not (root / where).resolve().is_relative_to(root):
            raise ConfigError(f"{path}: module {n}'s path {where!r} leads outside the teacher's directory")
        if any((root / where / name).exists() for name in ("model.safetensors", "pytorch_model.bin")):
            check_weights(read_state_dict(root / where), str(root / where))  # readable, floating point, finite


# the sentence-transformers modules a teacher may be made of (their code is sentence-transformers', not the model's)
ST_MODULES = {"Transformer", "Pooling", "Normalize", "Dense", "LayerNorm", "Dropout", "WordEmbeddings",
              "StaticEmbedding", "WeightedLayerPooling", "CNN", "LSTM", "BoW", "WordWeights"}
_WEIGHT_SUFFIXES = (".safetensors", ".bin")


def teacher_fingerprint(teacher: Path, max_seq_length: int) -> str:
    """What the teacher's vectors depend on, as one SHA-256: its weights' hash, every other file of its directory
    (pooling, normalization, tokenizer, configs: names and bytes), the maximum length, and the precision it runs
    in (fp32). Two teachers that differ in any of these never share cached vectors."""
    if not teacher.exists():  # a packaged model's name, or a hub id
        from albert.io.hub import resolve_model_dir

        teacher = resolve_model_dir(str(teacher))
    h = hashlib.sha256(f"weights {weights_sha256(teacher)}\nmax_seq_length {max_seq_length}\nfp32\n".encode())
    for f in sorted(teacher.rglob("*")) if teacher.is_dir() else []:
        if f.is_file() and f.suffix not in _WEIGHT_SUFFIXES and f.stat().st_size <= MAX_MODEL_JSON_BYTES:
            h.update(f"{f.relative_to(teacher)}\n".encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def _cached(path: Path, rows: int, dim: int | None) -> np.ndarray | None:
    """Cached vectors, verified: a float32 array of `rows` finite rows (of `dim` values, where known), else None
    (truncated, another shape, an object array, not NumPy at all): the caller recomputes them."""
    try:
        vectors = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        vectors = None
    ok = (isinstance(vectors, np.ndarray) and vectors.dtype == np.float32 and vectors.ndim == 2
          and len(vectors) == rows and (dim is None or vectors.shape[1] == dim) and bool(np.isfinite(vectors).all()))
    if not ok:
        logger.warning("%s: damaged or not this run's (expected %d rows of float32); recomputing it", path, rows)
        path.unlink(missing_ok=True)
        return None
    return vectors


def teacher_vectors(settings: DistillSettings, texts: list[str]) -> np.ndarray:
    """The teacher's vectors of `texts`, from the cache when the same teacher (everything that changes its
    vectors: teacher_fingerprint) saw the same texts; computed in chunks, each kept as it is finished, so a kill
    loses one chunk at most. Every cached file is verified when read, and recomputed if it fails."""
    fingerprint = teacher_fingerprint(Path(settings.teacher), settings.max_seq_length)
    texts_hash = hashlib.sha256("\n".join(texts).encode()).hexdigest()
    root = Path(settings.vectors.cache_dir or os.environ.get("ALBERT_CACHE", "") or Path.home() / ".cache" / "albert")
    cache = root / "teacher-vectors" / f"{fingerprint[:24]}-{texts_hash[:16]}"
    final = cache / "vectors.npy"
    if final.is_file():
        logger.info("teacher vectors from %s", final)
        vectors = _cached(final, len(texts), None)
        if vectors is not None:
            return vectors
    cache.mkdir(parents=True, exist_ok=True)
    encode = None
    chunk = 4096
    parts: list[np.ndarray] = []
    for i, start in enumerate(range(0, len(texts), chunk)):
        part = cache / f"part-{i:05d}.npy"
        rows = len(texts[start:start + chunk])
        found = _cached(part, rows, parts[0].shape[1] if parts else None) if part.is_file() else None
        if found is None:
            encode = encode or vector_teacher(settings.teacher, settings.max_seq_length)
            began = time.perf_counter()
            found = np.asarray(encode(texts[start:start + chunk]), dtype=np.float32)
            np.save(cache / f"part-{i:05d}.tmp.npy", found)
            os.replace(cache / f"part-{i:05d}.tmp.npy", part)
            logger.info("teacher vectors %d/%d (%.0f texts/s)", start + rows, len(texts),
                        rows / (time.perf_counter() - began))
        parts.append(found)
    vectors = np.concatenate(parts)
    if not np.isfinite(vectors).all():
        raise DataError(f"the teacher {settings.teacher} gave vectors that are not finite; is it broken?")
    np.save(cache / "vectors.tmp.npy", vectors)
    os.replace(cache / "vectors.tmp.npy", final)
    for i in range(len(parts)):
        (cache / f"part-{i:05d}.npy").unlink()
    (cache / "about.json").write_text(json.dumps({"teacher": settings.teacher, "fingerprint": fingerprint,
                                                  "texts_sha256": texts_hash, "texts": len(texts)}, indent=1) + "\n")
    return vectors


def neighbour_blocks(vectors: Tensor, size: int, seed: int, iterations: int = 5) -> list[list[int]]:
    """The rows of `vectors` in blocks of `size` (the last may be smaller) whose members are near each other:
    spherical k-means with a cluster per block (seeded start, `iterations` rounds), then the rows in cluster order,
    cut into consecutive blocks."""
    x = F.normalize(vectors.float(), dim=-1)
    k = max(1, -(-len(x) // size))
    g = torch.Generator().manual_seed(seed)
    centres = x[torch.randperm(len(x), generator=g)[:k]].clone()

    def assign() -> Tensor:
        return torch.cat([(x[lo:lo + 8192] @ centres.T).argmax(-1) for lo in range(0, len(x), 8192)])
    for _ in range(iterations):
        cluster = assign()
        sums = torch.zeros_like(centres).index_add_(0, cluster, x)
        empty = sums.norm(dim=-1) == 0  # a centre no row chose keeps its place
        centres = torch.where(empty[:, None], centres, F.normalize(sums, dim=-1))
    order = torch.argsort(assign() * len(x) + torch.randperm(len(x), generator=g)).tolist()
    return [order[lo:lo + size] for lo in range(0, len(order), size)]


def relation_loss(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """Summed over the rows: KL from the teacher's to the student's distribution of each text's cosine
    similarities to the batch's other texts (softmax at `temperature`)."""
    def log_relations(v: Tensor) -> Tensor:
        v = F.normalize(v, dim=-1)
        sims = (v @ v.T / temperature).masked_fill(torch.eye(len(v), dtype=torch.bool, device=v.device), -1e4)
        return sims.log_softmax(-1)
    return F.kl_div(log_relations(student), log_relations(teacher), log_target=True, reduction="sum")


class SentenceVectorTask:
    """Texts (student token ids) with their teacher vectors, in seeded epoch order (or in batches of neighbours);
    MSE to the teacher's vector, plus the in-batch similarity and relation terms when weighted; evaluated by
    agreement with the teacher on held-out texts."""

    stat_names = ["loss", "mse", "cosine", "relation", "texts"]

    def __init__(self, ids: list[list[int]], vectors: Tensor, eval_ids: list[list[int]], eval_vectors: Tensor,
                 settings: DistillSettings, pad_id: int) -> None:
        self.ids, self.vectors = ids, vectors
        self.eval_ids, self.eval_vectors = eval_ids, eval_vectors
        self.batch_size, self.pad_id = settings.batch_size, pad_id
        self.similarity_weight, self.temperature = settings.vectors.similarity_weight, settings.vectors.temperature
        self.relation_weight = settings.vectors.relation_weight
        blocks = (neighbour_blocks(vectors, settings.batch_size, settings.seed) if settings.vectors.neighbour_batches
                  else None)
        self.order = EpochOrder(len(ids), settings.seed, salt=13, blocks=blocks)

    def _collate(self, rows: list[int], ids: list[list[int]], vectors: Tensor) -> dict[str, Tensor]:
        batch = pad_batch([ids[i] for i in rows], [[0] * len(ids[i]) for i in rows], self.pad_id)
        out = {k: torch.tensor(v) for k, v in batch.items()}
        out["teacher"] = vectors[rows]
        return out

    def step_batches(self, step: int, rank: int, world: int, micro_batch: int) -> list[dict[str, Tensor]]:
        return [self._collate(rows, self.ids, self.vectors)
                for rows in self.order.micro_batches(self.batch_size, rank, world, micro_batch)]

    def normalizers(self, batches: list[dict[str, Tensor]]) -> Tensor:
        return torch.tensor([float(sum(len(b["teacher"]) for b in batches))], dtype=torch.float64)

    def _vectors(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    token_type_ids=batch["token_type_ids"])
        return pool_hidden_states(out.last_hidden_state, batch["attention_mask"]).float()

    def loss(self, model: nn.Module, batch: dict[str, Tensor], norm: Tensor) -> tuple[Tensor, Tensor]:
        student, teacher = self._vectors(model, batch), batch["teacher"].float()
        mse = ((student - teacher) ** 2).mean(-1)  # (B,)
        loss = mse.sum()
        if self.similarity_weight:
            sims = F.normalize(student, dim=-1) @ F.normalize(teacher, dim=-1).T / self.temperature  # (B, B)
            target = torch.arange(len(sims), device=sims.device)
            loss = loss + self.similarity_weight * F.cross_entropy(sims, target, reduction="sum")
        relation = relation_loss(student, teacher, self.temperature) if len(student) > 1 \
            else torch.zeros((), device=student.device)
        if self.relation_weight:
            loss = loss + self.relation_weight * relation
        cosine = F.cosine_similarity(student, teacher, dim=-1)
        stats = torch.stack([loss.detach(), mse.sum().detach(), cosine.sum().detach(), relation.detach(),
                             torch.tensor(float(len(mse)), device=mse.device)])
        return loss / norm.to(loss.dtype), stats

    def summarize(self, s: dict[str, float]) -> dict[str, float]:
        n = max(1.0, s["texts"])
        return {"loss": s["loss"] / n, "mse": s["mse"] / n, "cosine": s["cosine"] / n, "relation": s["relation"] / n}

    def evaluate(self, model: nn.Module, device: torch.device, dtype: torch.dtype | None) -> dict[str, float]:
        """Agreement with the teacher on the held-out texts: mean cosine, MSE, and how often a text's student vector
        is nearest its own teacher vector among all held-out texts' (recall@1 of the teacher's)."""
        was = model.training
        model.eval()
        vectors = []
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            for start in range(0, len(self.eval_ids), 64):
                rows = list(range(start, min(start + 64, len(self.eval_ids))))
                batch = {k: v.to(device) for k, v in self._collate(rows, self.eval_ids, self.eval_vectors).items()}
                vectors.append(self._vectors(model, batch).cpu())
        model.train(was)
        student, teacher = torch.cat(vectors), self.eval_vectors.float()
        nearest = (F.normalize(student, dim=-1) @ F.normalize(teacher, dim=-1).T).argmax(-1)
        return {"eval_cosine": float(F.cosine_similarity(student, teacher, dim=-1).mean()),
                "eval_mse": float(((student - teacher) ** 2).mean()),
                "eval_teacher_recall@1": float((nearest == torch.arange(len(student))).float().mean())}

    def data_state(self) -> dict[str, Any]:
        return self.order.state()

    def load_data_state(self, state: dict[str, Any]) -> None:
        self.order.load_state(state)
