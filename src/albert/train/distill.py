"""Distillation through the one training loop: knowledge moved from a teacher that has it into an ALBERT student.

Masked LM (DistilBERT's soft targets): an ALBERT teacher with the same vocabulary and a student with fewer passes of
the shared layer (or a narrower one) read the same masked pretraining batches; at the masked positions the student
matches the teacher's distribution softened by a temperature (KL, scaled by T²) beside the true tokens'
cross-entropy, and SOP keeps its own loss. A student with fewer passes can start as the teacher itself — the same
shared weights run fewer times — which only ALBERT's sharing makes free.

A task (Hinton et al.'s soft labels): a fine-tuned teacher and a smaller student read the task's training rows
through the task's own featurizer; beside the task's loss the student matches the teacher's outputs — class,
choice, tag and span distributions softened by a temperature (KL, scaled by T²), a regression's value (MSE), the
answerability logit (binary KL to the teacher's probability). The student is saved as a fine-tuned directory of the
task.

Sentence vectors (Reimers & Gurevych 2020, across tokenizers): the student reads each text with its own tokenizer
and its mean-pooled vector — what `albert embed` computes — regresses onto the teacher's vector of the same text
(MSE), optionally with an in-batch similarity term (each student vector must be nearer its own teacher vector than
the batch's other texts'). The teacher's vectors are computed once and cached on disk under the teacher's and the
texts' SHA-256, so a resumed or repeated run reads them instead of recomputing them. `fit_for_finetuning` (`albert
convert --for-finetuning`) then readies such a student for fine-tuning without moving its normalised vectors.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from albert.errors import ConfigError, DataError
from albert.io.files import iter_documents
from albert.io.output_dirs import check_new_output, claim_output
from albert.modeling.backbone import pool_hidden_states
from albert.modeling.pretrained import AlbertModel, AlbertPreTrainedModel
from albert.tasks.batching import pad_batch
from albert.tokenization.tokenizer import AlbertTokenizer
from albert.train.cards import write_distill_card
from albert.train.loop import EpochOrder, train
from albert.train.settings import TrainSettings, setting

logger = logging.getLogger(__name__)

@dataclass
class DistillSettings(TrainSettings):
    kind: Literal["sentence-vectors", "masked-lm", "task"] = setting(
        "sentence-vectors", "sentence-vectors: the teacher's sentence vectors; masked-lm: an ALBERT teacher's "
                            "masked-token distributions; task: a fine-tuned teacher's soft labels (same vocabulary)")
    teacher: str = setting("", "sentence-vectors: a sentence-transformers directory, or an albert model (its mean "
                               "vectors); masked-lm: an albert pretraining model; task: a fine-tuned directory")
    teacher_licence: str = setting("", "the teacher's licence, written into the student's model card")
    student: str = setting("", "the albert model directory (or packaged name) the student starts from")
    student_overrides: dict[str, Any] = setting({}, "config fields replaced in the student's config, e.g. "
                                                    "'{\"num_hidden_layers\": 6}' for half the passes")
    data: list[str] = setting([], "sentence-vectors: text files (a paragraph per line, a blank line between "
                                  "documents); masked-lm: a directory made by `albert data prepare`; task: the "
                                  "training file, then optionally the dev file")
    out: str = setting("", "the student's directory (new), written at the end")
    max_texts: int = setting(200_000, "texts drawn from --data: paragraphs, and one sentence of some as short texts")
    short_share: float = setting(0.5, "the share of paragraphs that also give one of their sentences as a short text")
    min_words: int = setting(8, "paragraphs of fewer words are skipped (a WordNet gloss has 3 to 8)")
    eval_texts: int = setting(2000, "texts held out from training, for the evaluation's agreement with the teacher")
    max_seq_length: int = setting(128, "tokens per text at most, for student and teacher")
    similarity_weight: float = setting(0.0, "weight of the in-batch similarity term beside the MSE (0: MSE only)")
    relation_weight: float = setting(0.0, "weight of the relation term beside the MSE: each text's similarities to the "
                                          "batch's other texts, as a softmax at --temperature, match the teacher's "
                                          "(KL; 0: none)")
    neighbour_batches: bool = setting(False, "batches of texts near each other by the teacher's vectors (spherical "
                                             "k-means) instead of random ones: the relation term then weighs fine "
                                             "distinctions")
    temperature: float = setting(0.05, "the in-batch similarity and relation terms' softmax temperature")
    kd_weight: float = setting(0.9, "masked-lm, task: the soft targets' share of the loss (the rest: the true labels)")
    kd_temperature: float = setting(2.0, "masked-lm, task: the softmax temperature of the soft targets")
    eval_examples: int = setting(2000, "masked-lm: held-out sequences in each evaluation")
    cache_dir: str = setting("", "where the teacher's vectors are kept (under teacher-vectors/); '' is $ALBERT_CACHE "
                                 "or ~/.cache/albert")
    # the loop's defaults, for distillation
    optimizer: Literal["lamb", "adamw", "adamw_original"] = "adamw"  # type: ignore[assignment]
    learning_rate: float = 1e-4
    batch_size: int = 32
    warmup_fraction: float = 0.05
    run_dir: str = setting("", "training state (checkpoints, metrics); '' is --out's name + '-run', beside it")
    eval_every: int = 1000
    save_every: int = 500

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.data, str):
            self.data = [self.data]
        if not self.teacher or not self.student or not self.data or not self.out:
            raise ConfigError("distill needs --teacher, --student, --data and --out")
        if not 0 <= self.short_share <= 1:
            raise ConfigError(f"short_share must be in [0, 1], got {self.short_share}")
        if self.min_words < 1:
            raise ConfigError(f"min_words must be >= 1, got {self.min_words}")
        if self.max_texts <= self.eval_texts:
            raise ConfigError(f"max_texts ({self.max_texts}) must exceed eval_texts ({self.eval_texts})")
        if self.temperature <= 0 or self.similarity_weight < 0 or self.relation_weight < 0 or self.kd_temperature <= 0:
            raise ConfigError("temperature and kd_temperature must be > 0, similarity_weight and relation_weight >= 0")
        if not 0 <= self.kd_weight <= 1:
            raise ConfigError(f"kd_weight must be in [0, 1], got {self.kd_weight}")


# ----- texts -----
def _a_sentence(paragraph: str, rng: np.random.Generator) -> str:
    """One sentence of a paragraph (split at '. ', '? ', '! '), chosen at random among those of 4 words or more."""
    parts, start = [], 0
    for i, ch in enumerate(paragraph[:-1]):
        if ch in ".?!" and paragraph[i + 1] == " ":
            parts.append(paragraph[start:i + 1].strip())
            start = i + 2
    parts.append(paragraph[start:].strip())
    good = [p for p in parts if len(p.split()) >= 4]
    return good[int(rng.integers(len(good)))] if good else ""


def select_texts(paths: list[str], max_texts: int, short_share: float, seed: int, min_words: int = 8) -> list[str]:
    """Paragraphs of `min_words` words or more from the files' documents, and for `short_share` of them one sentence
    (queries are short, documents long); `max_texts` of them, drawn with `seed` from all, in a seeded order."""
    rng = np.random.default_rng([seed, 11])
    texts: list[str] = []
    for path in paths:
        for doc in iter_documents(path):
            for paragraph in doc:
                if len(paragraph.split()) < min_words:
                    continue
                texts.append(paragraph)
                if rng.random() < short_share:
                    sentence = _a_sentence(paragraph, rng)
                    if sentence and sentence != paragraph:
                        texts.append(sentence)
    if len(texts) < 2:
        raise DataError(f"{', '.join(paths)}: fewer than two paragraphs of {min_words} words or more")
    chosen = rng.permutation(len(texts))[:max_texts]
    return [texts[i] for i in chosen]


# ----- a sentence-vector student made ready for fine-tuning -----
FIT_TEXTS = 1000  # paragraphs whose tokens set fit_for_finetuning's scale


def fit_for_finetuning(source: str | Path, out: str | Path, text_files: list[str], max_seq_length: int = 128) -> float:
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
    Returns the scale. docs/distillation.md, "Ready for fine-tuning", has the measurement behind both."""
    from albert.io.hub import resolve_model_dir
    from albert.modeling.pretrained import AlbertModel

    check_new_output(out, "convert")
    source = Path(source) if Path(source).is_dir() else resolve_model_dir(str(source))
    model = AlbertModel.from_pretrained(source)
    config, pooler = model.config, model.pooler
    if config.num_hidden_groups != config.num_hidden_layers or pooler is None:
        raise ConfigError(f"{source}: fitting for fine-tuning needs a last pass with a layer group of its own and a "
                          f"pooler ({config.num_hidden_layers} passes share {config.num_hidden_groups} groups): "
                          f"scaling a shared layer would change every pass")
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
        norm.weight.mul_(scale)
        norm.bias.mul_(scale)
        pooler.weight.copy_(torch.eye(config.hidden_size))
        pooler.bias.zero_()
    with claim_output(out, "convert") as staging:
        for item in source.iterdir():  # tokenizer, sentence-transformers layout, card: as they were
            if item.is_file() and item.suffix not in (".safetensors", ".bin") and item.name != "config.json":
                shutil.copyfile(item, staging / item.name)
            elif item.is_dir():
                shutil.copytree(item, staging / item.name)
        model.to(dtype).save_pretrained(staging)
    return scale


def last_states(model: nn.Module, tokenizer: AlbertTokenizer, texts: list[str], max_seq_length: int,
                batch: int = 64) -> Iterator[tuple[Tensor, Tensor]]:
    """(last hidden states, attention mask) of `texts` in batches, without gradients."""
    for start in range(0, len(texts), batch):
        enc = tokenizer(texts[start:start + batch], truncation=True, max_length=max_seq_length, padding=True,
                        return_tensors="pt")
        with torch.inference_mode():
            yield model(**enc).last_hidden_state, enc["attention_mask"]


# ----- the teacher's vectors -----
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
    if (Path(teacher) / "modules.json").is_file():
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ConfigError("a sentence-transformers teacher needs the package: pip install "
                              "'albert-lm[sentence-transformers]'") from None
        st = SentenceTransformer(teacher, device="cpu")
        st.max_seq_length = max_seq_length
        return lambda texts: st.encode(texts, convert_to_numpy=True, batch_size=64).astype(np.float32)
    from albert.runtime.policy import Runtime, prepare_for_inference

    model = prepare_for_inference(AlbertModel.from_pretrained(teacher), Runtime(torch.device("cpu"), "fp32"))
    tokenizer = AlbertTokenizer.from_pretrained(teacher)

    def encode(texts: list[str]) -> np.ndarray:
        return np.concatenate([pool_hidden_states(hidden, mask).float().numpy()
                               for hidden, mask in last_states(model, tokenizer, texts, max_seq_length)])
    return encode


def teacher_vectors(settings: DistillSettings, texts: list[str]) -> np.ndarray:
    """The teacher's vectors of `texts`, from the cache when the same teacher saw the same texts; computed in
    chunks, each kept as it is finished, so a kill loses one chunk at most."""
    teacher_hash = weights_sha256(Path(settings.teacher))
    texts_hash = hashlib.sha256("\n".join(texts).encode()).hexdigest()
    root = Path(settings.cache_dir or os.environ.get("ALBERT_CACHE", "") or Path.home() / ".cache" / "albert")
    cache = root / "teacher-vectors" / f"{teacher_hash[:16]}-{texts_hash[:16]}-{settings.max_seq_length}"
    final = cache / "vectors.npy"
    if final.is_file():
        logger.info("teacher vectors from %s", final)
        return np.load(final)
    cache.mkdir(parents=True, exist_ok=True)
    encode = vector_teacher(settings.teacher, settings.max_seq_length)
    chunk = 4096
    parts = []
    for i, start in enumerate(range(0, len(texts), chunk)):
        part = cache / f"part-{i:05d}.npy"
        if not part.is_file():
            began = time.perf_counter()
            vectors = encode(texts[start:start + chunk])
            np.save(cache / f"part-{i:05d}.tmp.npy", vectors)
            os.replace(cache / f"part-{i:05d}.tmp.npy", part)
            logger.info("teacher vectors %d/%d (%.0f texts/s)", min(start + chunk, len(texts)), len(texts),
                        len(vectors) / (time.perf_counter() - began))
        parts.append(np.load(part))
    vectors = np.concatenate(parts)
    np.save(cache / "vectors.tmp.npy", vectors)
    os.replace(cache / "vectors.tmp.npy", final)
    for i in range(len(parts)):
        (cache / f"part-{i:05d}.npy").unlink()
    (cache / "about.json").write_text(json.dumps({"teacher": settings.teacher, "teacher_sha256": teacher_hash,
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


# ----- the task the loop runs -----
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
        self.similarity_weight, self.temperature = settings.similarity_weight, settings.temperature
        self.relation_weight = settings.relation_weight
        blocks = neighbour_blocks(vectors, settings.batch_size, settings.seed) if settings.neighbour_batches else None
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


class _SoftTargets:
    """A task of the loop that adds soft targets to another task's (`base`): its batches, normalisers, evaluation
    and data position are the base's; its statistics are the base's and the soft-target loss's sum."""

    base: Any
    kd_count = "kd_count"  # the statistic the soft-target loss is averaged over

    def step_batches(self, step: int, rank: int, world: int, micro_batch: int) -> list[dict[str, Tensor]]:
        return self.base.step_batches(step, rank, world, micro_batch)

    def normalizers(self, batches: list[dict[str, Tensor]]) -> Tensor:
        return self.base.normalizers(batches)

    def summarize(self, s: dict[str, float]) -> dict[str, float]:
        out = self.base.summarize(s)
        out["kd_loss"] = s["kd_sum"] / max(s[self.kd_count], 1)
        return out

    def evaluate(self, model: nn.Module, device: torch.device, dtype: torch.dtype | None) -> dict[str, float]:
        return self.base.evaluate(model, device, dtype)

    def data_state(self) -> dict[str, Any]:
        return self.base.data_state()

    def load_data_state(self, state: dict[str, Any]) -> None:
        self.base.load_data_state(state)


class MaskedLMDistillTask(_SoftTargets):
    """Pretraining's masked batches (its data, evaluation and statistics: `PretrainTask`), with the teacher's
    distributions at the masked positions as soft targets: loss = kd_weight · T² · KL(teacher_T ‖ student_T) +
    (1 - kd_weight) · the true tokens' CE, + SOP's CE."""

    kd_count = "mlm_count"

    def __init__(self, pretrain_task: Any, teacher: nn.Module, settings: DistillSettings) -> None:
        self.base, self.teacher = pretrain_task, teacher
        self.kd_weight, self.T = settings.kd_weight, settings.kd_temperature
        self.stat_names = [*pretrain_task.stat_names, "kd_sum"]

    def loss(self, model: nn.Module, batch: dict[str, Tensor], norm: Tensor) -> tuple[Tensor, Tensor]:
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids", "mlm_positions",
                                        "position_ids", "example_ids", "sop_positions") if k in batch}
        self.teacher.to(batch["input_ids"].device)
        with torch.no_grad():
            soft = (self.teacher(**inputs).prediction_logits.float() / self.T).log_softmax(-1)  # (B, P, V)
        out = model(**inputs)
        logits = out.prediction_logits.float()
        valid = batch["labels"] != -100
        kd_sum = (F.kl_div((logits / self.T).log_softmax(-1), soft, log_target=True, reduction="none").sum(-1)
                  * valid).sum() * self.T ** 2
        hard, stats = self.base.loss_from_outputs(out, batch, norm)
        mlm_sum = stats[1]
        loss = hard - (self.kd_weight * mlm_sum / norm[0]).to(hard.dtype) + (self.kd_weight * kd_sum / norm[0])
        return loss.to(torch.float32), torch.cat([stats, kd_sum.detach().double().reshape(1)])


class _Recorder(nn.Module):
    """The student as the task's featurizer calls it, keeping the call's inputs and outputs for the soft targets."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.last: tuple[dict[str, Any], Any] | None = None

    def forward(self, **inputs: Any) -> Any:
        out = self.model(**inputs)
        self.last = (inputs, out)
        return out


class TaskDistillTask(_SoftTargets):
    """The task's own training data, loss, statistics and evaluation (`FinetuneData`), with the teacher's outputs on
    the same inputs as soft targets: loss = (1 - kd_weight) · the task's loss + kd_weight · the soft-target loss."""

    def __init__(self, data: Any, teacher: nn.Module, settings: DistillSettings) -> None:
        self.base, self.teacher = data, teacher
        self.kd_weight, self.T = settings.kd_weight, settings.kd_temperature
        self.stat_names = [*data.stat_names, "kd_sum", "kd_count"]

    def soft_loss(self, student: Any, teacher: Any, batch: dict[str, Tensor]) -> tuple[Tensor, float]:
        """Summed over the rows (tokens, for tagging) of the batch: the distance of each of the student's outputs to
        the teacher's, and how many rows."""
        total, rows = torch.zeros((), device=batch["input_ids"].device), 0.0
        for name in ("logits", "start_logits", "end_logits"):
            s, t = getattr(student, name, None), getattr(teacher, name, None)
            if s is None or t is None:
                continue
            s, t = s.float(), t.float()
            if s.shape[-1] == 1 and name == "logits":  # a regression's value
                per = ((s - t) ** 2).squeeze(-1)
            else:
                per = F.kl_div((s / self.T).log_softmax(-1), (t / self.T).log_softmax(-1), log_target=True,
                               reduction="none").sum(-1) * self.T ** 2
            labels = batch.get("labels")
            if labels is not None and labels.shape == per.shape and labels.dtype == torch.long:
                keep = labels != -100  # tagging: the words' first pieces
                per, n = per * keep, float(keep.sum())
            else:
                n = float(per.numel())
            total, rows = total + per.sum(), rows + n
        s_cls, t_cls = getattr(student, "cls_logits", None), getattr(teacher, "cls_logits", None)
        if s_cls is not None and t_cls is not None:  # binary KL: the BCE to the teacher's probability less its own
            p = t_cls.float().sigmoid()
            total = total + (F.binary_cross_entropy_with_logits(s_cls.float(), p, reduction="sum")
                             - F.binary_cross_entropy_with_logits(t_cls.float(), p, reduction="sum"))
        return total, max(rows, 1.0)

    def loss(self, model: nn.Module, batch: dict[str, Tensor], norm: Tensor) -> tuple[Tensor, Tensor]:
        recorder = _Recorder(model)  # (a wrapper only: the model's weights, not copies)
        hard, stats = self.base.loss(recorder, batch, norm)
        assert recorder.last is not None
        inputs, student = recorder.last
        self.teacher.to(batch["input_ids"].device)
        with torch.no_grad():
            teacher = self.teacher(**inputs)
        soft_sum, rows = self.soft_loss(student, teacher, batch)
        examples = stats[1].clamp(min=1)  # the featurizer's count: the rows its loss was summed over
        soft = soft_sum / rows * examples / norm[0].to(soft_sum.dtype)
        loss = (1 - self.kd_weight) * hard + self.kd_weight * soft
        extra = torch.stack([soft_sum.detach().double(), torch.tensor(rows, dtype=torch.float64,
                                                                       device=soft_sum.device)])
        return loss.float(), torch.cat([stats.double(), extra])


# ----- the command -----
def run_dir_of(settings: DistillSettings) -> Path:
    out = Path(settings.out)
    return Path(settings.run_dir) if settings.run_dir else out.with_name(out.name + "-run")


def distill(settings: DistillSettings, resume: bool = False) -> Path:
    """Distil the teacher into the student through the one loop; --out gets the student, its tokenizer and a model
    card naming the teacher (path, SHA-256, licence), the data, the steps and the CPU hours."""
    out = Path(settings.out)
    check_new_output(out, "distill")
    settings = dataclasses.replace(settings, run_dir=str(run_dir_of(settings)))
    tokenizer = AlbertTokenizer.from_pretrained(settings.student)
    build = {"sentence-vectors": _sentence_vectors, "masked-lm": _masked_lm, "task": _task}[settings.kind]
    model, task, about = build(settings, tokenizer)
    began = time.perf_counter()
    try:
        train(settings, model, task, resume=resume)
    finally:
        close = getattr(getattr(task, "base", None), "close", None)
        if close is not None:
            close()
    scores = task.evaluate(model, next(model.parameters()).device, None)
    logger.info("held-out: %s", scores)
    with claim_output(out, "distill") as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "distill_results.json").write_text(json.dumps(scores, indent=2) + "\n")
        if settings.kind == "task" and scores:  # as a fine-tuned directory has them
            dev = {k.removeprefix("eval_"): v for k, v in scores.items()}
            (staging / "dev_results.json").write_text(json.dumps(dev, indent=2) + "\n")
        write_distill_card(staging, settings, weights_sha256(Path(settings.teacher)), about, scores,
                           time.perf_counter() - began)
    return out


def _sentence_vectors(settings: DistillSettings, tokenizer: AlbertTokenizer) -> tuple[AlbertPreTrainedModel, Any, str]:
    texts = select_texts(settings.data, settings.max_texts, settings.short_share, settings.seed,
                         settings.min_words)
    if len(texts) <= settings.eval_texts:
        raise DataError(f"{len(texts)} texts in --data: more than eval_texts ({settings.eval_texts}) are needed")
    vectors = torch.from_numpy(teacher_vectors(settings, texts))
    ids = tokenizer(texts, truncation=True, max_length=settings.max_seq_length)["input_ids"]
    held = settings.eval_texts
    torch.manual_seed(settings.seed)
    model = AlbertModel.from_pretrained(settings.student, **settings.student_overrides)
    task = SentenceVectorTask(ids[held:], vectors[held:], ids[:held], vectors[:held], settings,
                              tokenizer.pad_token_id)
    return model, task, f"{len(texts):,} texts ({held:,} held out)"


def _masked_lm(settings: DistillSettings, tokenizer: AlbertTokenizer) -> tuple[AlbertPreTrainedModel, Any, str]:
    from albert.modeling.heads import AlbertForPreTraining
    from albert.train.pretrain import PretrainTask
    from albert.train.settings import PretrainSettings

    if len(settings.data) != 1:
        raise ConfigError("masked-lm distillation reads one directory made by `albert data prepare` (--data DIR)")
    teacher = AlbertForPreTraining.from_pretrained(settings.teacher).eval()
    if teacher.config.vocab_size != tokenizer.vocab_size:
        raise ConfigError(f"masked-lm distillation needs one vocabulary: the teacher has {teacher.config.vocab_size} "
                          f"pieces, the student's tokenizer {tokenizer.vocab_size}")
    torch.manual_seed(settings.seed)
    model = AlbertForPreTraining.from_pretrained(settings.student, **settings.student_overrides)
    pretraining = PretrainSettings(data=settings.data[0], run_dir=settings.run_dir,
                                   max_seq_length=settings.max_seq_length, batch_size=settings.batch_size,
                                   seed=settings.seed, eval_examples=settings.eval_examples)
    task = MaskedLMDistillTask(PretrainTask(pretraining, tokenizer, model.config), teacher, settings)
    return model, task, f"`albert data prepare` shards in {settings.data[0]}"


def _task(settings: DistillSettings, tokenizer: AlbertTokenizer) -> tuple[AlbertPreTrainedModel, Any, str]:
    from albert.train.finetune import (
        FinetuneData,
        build_featurizer,
        head_config,
        labels_of,
        model_class,
        read_task_rows,
        task_spec_of,
    )

    if not 1 <= len(settings.data) <= 2:
        raise ConfigError("task distillation reads the training file and optionally the dev file (--data TRAIN [DEV])")
    directory, spec = task_spec_of(settings.teacher)  # the teacher must be a fine-tuned directory
    teacher = model_class(spec).from_pretrained(directory).eval()
    if teacher.config.vocab_size != tokenizer.vocab_size:
        raise ConfigError(f"task distillation needs one vocabulary: the teacher has {teacher.config.vocab_size} "
                          f"pieces, the student's tokenizer {tokenizer.vocab_size}")
    labels = labels_of(teacher)
    train_rows, spec = read_task_rows(spec, settings.data[0], labels, tokenizer)
    dev_rows = read_task_rows(spec, settings.data[1], labels, tokenizer)[0] if len(settings.data) > 1 else None
    if not train_rows:
        raise DataError(f"{settings.data[0]}: no examples")
    data = FinetuneData(build_featurizer(spec, tokenizer, labels), train_rows, dev_rows, settings.batch_size,
                        settings.seed)
    torch.manual_seed(settings.seed)
    model = model_class(spec).from_pretrained(settings.student, **head_config(spec, labels),
                                              **settings.student_overrides)
    return model, TaskDistillTask(data, teacher, settings), f"{len(train_rows):,} training rows ({spec.task})"
