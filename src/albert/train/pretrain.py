"""Pretraining: MLM (on masked positions only) + sentence-order prediction, through the one loop."""

from __future__ import annotations

import itertools
import json
import logging
import math
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from albert.data.pretraining import (
    ExampleSettings,
    Masker,
    PretrainingStream,
    SegmentPair,
    collate,
    collate_packed,
    pack_rows,
)
from albert.data.shards import Corpus, read_meta
from albert.errors import DataError
from albert.modeling.config import AlbertConfig, check_fits_memory, forward_flops
from albert.modeling.heads import AlbertForPreTraining
from albert.tokenization.tokenizer import AlbertTokenizer
from albert.train.checkpoints import checkpoint_dirs
from albert.train.loop import train
from albert.train.settings import PretrainSettings

logger = logging.getLogger(__name__)

Row = list[tuple[int, SegmentPair]]  # the (index in epoch, pair)s of one row of a batch: one, or several packed
EVAL_MASKING = 0.15  # held-out MLM is scored on 15% single-token masks, whatever the run's own masking


class PretrainTask:
    stat_names = ["loss_sum", "mlm_loss_sum", "mlm_correct", "mlm_count", "sop_loss_sum", "sop_correct",
                  "sop_count", "tokens", "positions", "flops"]

    def __init__(self, settings: PretrainSettings, tokenizer: AlbertTokenizer, config: AlbertConfig) -> None:
        self.settings = settings
        self.config = config
        self.examples = ExampleSettings(settings.max_seq_length, settings.short_seq_prob, settings.masked_lm_prob,
                                        settings.max_predictions_per_seq, settings.max_ngram)
        self.masker = Masker(tokenizer, self.examples)
        # Held-out scores use one masking whatever the recipe (15%, single tokens), so that recipes compare
        self.eval_masker = Masker(tokenizer, ExampleSettings(
            settings.max_seq_length, settings.short_seq_prob, EVAL_MASKING, math.ceil(EVAL_MASKING *
                                                                                      settings.max_seq_length), 1))
        self.pad_id = tokenizer.pad_token_id
        train_corpus = Corpus.open(settings.data, "train")
        if train_corpus.num_tokens == 0:
            raise DataError(f"{settings.data}: the training split is empty")
        self.stream = PretrainingStream(train_corpus, self.masker, self.examples, settings.seed,
                                        settings.document_order)
        self.eval_corpus = Corpus.open(settings.data, "eval")
        self.epoch, self.pool_start, self.units_taken = 0, 0, 0
        self._legacy_taken: int | None = None  # a checkpoint of an earlier version counted whole batches
        self._pool: list[list[Row]] = []  # batches of rows
        self._iter: Iterator[tuple[int, SegmentPair]] | None = None
        self._iter_pos = (-1, -1)
        self._eval_batches: list[dict[str, Tensor]] | None = None
        self._workers: ProcessPoolExecutor | None = None
        self._ahead: dict[int, Future] | None = None  # unit index -> its micro-batch being built
        self._reader: ThreadPoolExecutor | None = None
        self._next_pairs: tuple[tuple[int, int, int], Future] | None = None  # the next pool's (pairs, rows)
        self._batch_state = (self.masker, self.pad_id, self.examples.max_predictions_per_seq,
                             settings.packing)  # see _build_batch
        if settings.data_workers:
            self._reader = ThreadPoolExecutor(1)
            global _WORKER_STATE
            _WORKER_STATE = self._batch_state
            # forked now, before the model touches a GPU; the children inherit the masker (and its tokenizer)
            self._workers = ProcessPoolExecutor(settings.data_workers, mp_context=multiprocessing.get_context("fork"))
            self._workers.submit(int).result()  # with fork, every worker starts on the first submit

    # --- data ---
    # Sequences of a corpus of short documents (a dictionary, say) are far shorter than max_seq_length;
    # padding each batch to its longest would waste most of the compute. So a pool of POOL_STEPS steps'
    # worth of pairs is sorted by length and cut into batches, whose order is then shuffled (seeded). With
    # `packing`, the pool's pairs are first packed into rows of up to max_seq_length tokens.
    # A step takes micro-batch *units* from the pool in order: batch_size / micro-batch of them, fewer while the
    # batch ramps up; without a ramp a step's units are exactly one batch of the pool.
    POOL_STEPS = 16

    def _fill_pool(self) -> None:
        """Build the pool that starts at example `pool_start` of `epoch` (the next epoch once this one is used up)."""
        G = self.settings.batch_size
        for _ in range(2):
            pairs, rows = self._take_pairs(self.epoch, self.pool_start, G * self.POOL_STEPS)
            if len(rows) >= G:
                break
            self.epoch, self.pool_start = self.epoch + 1, 0  # too few left: the next epoch reshuffles and remasks
        else:
            raise DataError(f"{self.settings.data}: fewer training sequences than one batch ({G})")
        self._pool_size = len(pairs)
        batches = [rows[i:i + G] for i in range(0, len(rows) - G + 1, G)]  # a remainder < G is dropped
        order = np.random.default_rng([self.settings.seed, self.epoch, self.pool_start, 3]).permutation(len(batches))
        self._pool = [batches[i] for i in order]
        self._ahead = None
        if self._reader is not None:  # the next pool's pairs, read in a thread while this pool trains
            key = (self.epoch, self.pool_start + self._pool_size, G * self.POOL_STEPS)
            self._next_pairs = (key, self._reader.submit(self._pairs_and_rows, *key))

    def _rows(self, pairs: list[tuple[int, SegmentPair]]) -> list[Row]:
        """The pool's rows sorted by length: one pair each, or (packing) as many as fit max_seq_length."""
        length = [len(p.a) + len(p.b) + 3 for _, p in pairs]  # [CLS] A [SEP] B [SEP]
        groups = pack_rows(length, self.settings.max_seq_length) if self.settings.packing else \
            [[i] for i in range(len(pairs))]
        groups.sort(key=lambda g: sum(length[i] for i in g))  # (stable: ties keep their order)
        return [[pairs[i] for i in g] for g in groups]

    def _take_pairs(self, epoch: int, start: int, n: int) -> tuple[list[tuple[int, SegmentPair]], list[Row]]:
        if self._next_pairs is not None:
            key, future = self._next_pairs
            self._next_pairs = None
            pairs_rows = future.result()
            if key == (epoch, start, n):
                return pairs_rows
        return self._pairs_and_rows(epoch, start, n)  # (a mismatch, after a resume: _pairs_from starts afresh)

    def _pairs_and_rows(self, epoch: int, start: int, n: int) -> tuple[list[tuple[int, SegmentPair]], list[Row]]:
        """A pool's pairs and its rows (sorting and packing run in the reader thread, off the training loop)."""
        pairs = self._pairs_from(epoch, start, n)
        return pairs, self._rows(pairs)

    def _pairs_from(self, epoch: int, start: int, n: int) -> list[tuple[int, SegmentPair]]:
        if self._iter is None or self._iter_pos != (epoch, start):  # only after a resume or a new epoch
            self._iter = self.stream.epoch_pairs(epoch, start)
        out = list(itertools.islice(self._iter, n))
        self._iter_pos = (epoch, start + len(out))
        return out

    def units_at(self, step: int, units_per_batch: int) -> int:
        """Micro-batch units of step `step`: all of a batch, or fewer on the batch ramp (rounded up)."""
        s = self.settings
        if step >= s.batch_ramp_steps:
            return units_per_batch
        fraction = s.batch_ramp_from + (1 - s.batch_ramp_from) * step / s.batch_ramp_steps
        return max(1, min(units_per_batch, math.ceil(fraction * units_per_batch - 1e-9)))

    def step_batches(self, step: int, rank: int, world: int, micro_batch: int) -> list[dict[str, Tensor]]:
        A = self.settings.batch_size // (micro_batch * world)  # units per pool batch
        if self._legacy_taken is not None:
            self.units_taken, self._legacy_taken = self._legacy_taken * A, None
        out = []
        for _ in range(self.units_at(step, A)):
            if self.units_taken >= len(self._pool) * A:
                if self._pool:
                    self.pool_start += self._pool_size
                self.units_taken = 0
                self._fill_pool()
            u = self.units_taken
            self.units_taken += 1
            if self._workers is None:
                out.append(_to_tensors(_build_batch(self._unit(u, A, rank, world, micro_batch), self.settings.seed,
                                                    self.epoch, self._batch_state)))
                continue
            if self._ahead is None:  # the rest of this pool, built in the workers while the model trains
                self._ahead = {j: self._workers.submit(_build_batch, self._unit(j, A, rank, world, micro_batch),
                                                       self.settings.seed, self.epoch)
                               for j in range(u, len(self._pool) * A)}
            out.append(_to_tensors(self._ahead.pop(u).result()))
        return out

    def _unit(self, u: int, units_per_batch: int, rank: int, world: int, micro_batch: int) -> list[Row]:
        # unit m of a batch, rank r's share: rows [(m*world + r)*b, +b) — the same examples whatever the layout
        batch, m = self._pool[u // units_per_batch], u % units_per_batch
        return batch[(m * world + rank) * micro_batch:(m * world + rank + 1) * micro_batch]

    def close(self) -> None:
        if self._reader is not None:
            self._reader.shutdown(cancel_futures=True)
            self._reader = None
        if self._workers is not None:
            self._workers.shutdown(cancel_futures=True)
            self._workers = None

    def data_state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "pool_start": self.pool_start, "units_taken": self.units_taken}

    def load_data_state(self, state: dict[str, Any]) -> None:
        self.epoch, self.pool_start = int(state["epoch"]), int(state["pool_start"])
        self._fill_pool()
        if "units_taken" in state:
            self.units_taken = int(state["units_taken"])
        else:  # written before steps took units: whole batches, converted on the first step
            self._legacy_taken = int(state["pool_taken"])

    # --- loss ---
    def normalizers(self, batches: list[dict[str, Tensor]]) -> Tensor:
        mlm = sum(int((b["labels"] != -100).sum()) for b in batches)
        examples = sum(int((b["sentence_order_label"] != -100).sum()) for b in batches)
        return torch.tensor([max(mlm, 1), max(examples, 1)], dtype=torch.float64)

    def loss(self, model: nn.Module, batch: dict[str, Tensor], norm: Tensor) -> tuple[Tensor, Tensor]:
        packed = {k: batch[k] for k in ("position_ids", "example_ids", "sop_positions") if k in batch}
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    token_type_ids=batch["token_type_ids"], mlm_positions=batch["mlm_positions"], **packed)
        return self.loss_from_outputs(out, batch, norm)

    def loss_from_outputs(self, out: Any, batch: dict[str, Tensor], norm: Tensor) -> tuple[Tensor, Tensor]:
        """The MLM + SOP loss and the statistics of a forward's outputs (distillation adds its own term)."""
        logits = out.prediction_logits.float()  # (B, P, V)
        labels = batch["labels"]
        mlm_sum = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100,
                                  reduction="sum")
        sop_logits = out.sop_logits.float().reshape(-1, 2)  # (examples, 2); packed rows hold several
        sop_labels = batch["sentence_order_label"].reshape(-1)
        sop_sum = F.cross_entropy(sop_logits, sop_labels, ignore_index=-100, reduction="sum")
        loss = mlm_sum / norm[0] + self.settings.sop_weight * sop_sum / norm[1]
        with torch.no_grad():
            valid = labels != -100
            sop_valid = sop_labels != -100
            mlm_correct = ((logits.argmax(-1) == labels) & valid).sum()
            sop_correct = ((sop_logits.argmax(-1) == sop_labels) & sop_valid).sum()
            stats = torch.cat([
                torch.stack([loss.detach().double() * 0,  # filled by summarize
                             mlm_sum.double(), mlm_correct.double(), valid.sum().double(), sop_sum.double(),
                             sop_correct.double(), sop_valid.sum().double(), batch["attention_mask"].sum().double()]),
                torch.tensor([float(batch["input_ids"].numel()), self.batch_flops(batch)], dtype=torch.float64,
                             device=labels.device),
            ])
        return loss.to(torch.float32), stats

    def batch_flops(self, batch: dict[str, Tensor]) -> float:
        """Model FLOPs of forward + backward on this micro-batch, padding and prediction slots included."""
        rows, length = batch["input_ids"].shape
        return 3 * forward_flops(self.config, rows, length, batch["labels"].numel())

    def summarize(self, s: dict[str, float]) -> dict[str, float]:
        mlm_loss = s["mlm_loss_sum"] / max(s["mlm_count"], 1)
        sop_loss = s["sop_loss_sum"] / max(s["sop_count"], 1)
        return {"loss": mlm_loss + self.settings.sop_weight * sop_loss, "mlm_loss": mlm_loss, "sop_loss": sop_loss,
                "mlm_acc": s["mlm_correct"] / max(s["mlm_count"], 1),
                "sop_acc": s["sop_correct"] / max(s["sop_count"], 1),
                # tokens: real ones; positions: what the step computed on (tokens + padding)
                "tokens": s["tokens"], "positions": s["positions"], "sequences": s["sop_count"],
                "gflop": s["flops"] / 1e9}

    # --- evaluation on held-out documents ---
    def eval_batches(self) -> list[dict[str, Tensor]]:
        if self._eval_batches is None:
            stream = PretrainingStream(self.eval_corpus, self.eval_masker, self.examples, seed=12345)
            examples = []
            for _, ex in stream.examples(0, 0):
                examples.append(ex)
                if len(examples) >= self.settings.eval_examples:
                    break
            size = 32
            examples.sort(key=lambda e: len(e.input_ids))
            self._eval_batches = [collate(examples[i:i + size], self.pad_id,
                                          self.eval_masker.settings.max_predictions_per_seq)
                                  for i in range(0, len(examples), size)]
        return self._eval_batches

    @torch.no_grad()
    def evaluate(self, model: nn.Module, device: torch.device, dtype: torch.dtype | None) -> dict[str, float]:
        was_training = model.training
        model.eval()
        totals = torch.zeros(len(self.stat_names), dtype=torch.float64)
        ones = torch.ones(2, dtype=torch.float64, device=device)
        for batch in self.eval_batches():
            batch = {k: v.to(device) for k, v in batch.items()}
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                _, s = self.loss(model, batch, ones)
            totals += s.cpu()
        model.train(was_training)
        if not self.eval_batches():
            return {}
        summary = self.summarize(dict(zip(self.stat_names, totals.tolist())))
        return {"eval_mlm_loss": summary["mlm_loss"], "eval_mlm_acc": summary["mlm_acc"],
                "eval_sop_acc": summary["sop_acc"], "eval_examples": float(sum(len(b["input_ids"])
                                                                             for b in self.eval_batches()))}


def _example_rng(seed: int, epoch: int, k: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, k, 2])


_WORKER_STATE: tuple[Masker, int, int, bool] | None = None  # (masker, pad id, max predictions, packing), pre-fork


def _build_batch(rows: list[Row], seed: int, epoch: int,
                 state: tuple[Masker, int, int, bool] | None = None) -> dict[str, np.ndarray]:
    """Mask and collate one micro-batch. Each example's randomness comes from its own key, so the batch is the
    same whichever process builds it. Arrays, not tensors, cross the process boundary (plain pickling)."""
    masker, pad_id, max_predictions, packing = state or _WORKER_STATE  # type: ignore[misc]
    examples = [[masker.build(pair, _example_rng(seed, epoch, k)) for k, pair in row] for row in rows]
    if packing:  # rows of max_seq_length and prediction slots in 16s: a handful of shapes for torch.compile
        batch = collate_packed(examples, pad_id, masker.settings.max_seq_length, predictions_multiple=16)
    else:
        batch = collate([e for (e,) in examples], pad_id, max_predictions)
    return {k: v.numpy() for k, v in batch.items()}


def _to_tensors(arrays: dict[str, np.ndarray]) -> dict[str, Tensor]:
    return {k: torch.from_numpy(v) for k, v in arrays.items()}


def build_config(settings: PretrainSettings, vocab_size: int) -> AlbertConfig:
    path = Path(settings.model)
    if path.suffix == ".json" or path.is_file():
        config = AlbertConfig.from_json_file(path)
    else:
        config = AlbertConfig.from_preset(settings.model)
    import dataclasses

    overrides = dict(settings.model_overrides)
    overrides.setdefault("vocab_size", vocab_size)
    config = dataclasses.replace(config, **overrides)
    if config.vocab_size != vocab_size:
        raise DataError(f"the tokenizer has {vocab_size} pieces but the model's vocab_size is {config.vocab_size}")
    check_fits_memory(config)
    if settings.max_seq_length > config.max_position_embeddings:
        raise DataError(f"max_seq_length {settings.max_seq_length} exceeds the model's max_position_embeddings "
                        f"({config.max_position_embeddings})")
    return config


def pretrain(settings: PretrainSettings, resume: bool = False,
             on_step: Callable[[int], None] | None = None) -> Path:
    """Validate everything, then train; the final model (with tokenizer) goes to RUN_DIR/final."""
    data = Path(settings.data)
    meta = read_meta(data)
    tokenizer = AlbertTokenizer.from_pretrained(data / "tokenizer")
    if tokenizer.vocab_size != meta["vocab_size"]:
        raise DataError(f"{data}: tokenizer has {tokenizer.vocab_size} pieces, the shards were made with "
                        f"{meta['vocab_size']}")
    config = build_config(settings, tokenizer.vocab_size)
    task = PretrainTask(settings, tokenizer, config)
    torch.manual_seed(settings.seed)
    if settings.init_from and not (resume and checkpoint_dirs(Path(settings.run_dir))):
        # (a resumed run takes its weights from its own checkpoint: init_from need not exist any more)
        model = AlbertForPreTraining.from_pretrained(settings.init_from, config=config)
    else:
        model = AlbertForPreTraining(config)
    logger.info("model: %s parameters; %d training tokens", f"{model.num_parameters():,}",
                task.stream.corpus.num_tokens)
    try:
        model = train(settings, model, task, resume=resume, on_step=on_step)  # type: ignore[assignment]
    finally:
        task.close()
    final = Path(settings.run_dir) / "final"
    if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:  # rank 0 writes
        assert isinstance(model, AlbertForPreTraining)
        model.save_pretrained(final)
        tokenizer.save_pretrained(final)
        (final / "training.json").write_text(json.dumps({"settings": settings.run_dir, "data": meta}, indent=2))
    return final
