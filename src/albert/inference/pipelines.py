"""Inference pipelines: `albert.pipeline(task, model=...)`, outputs shaped like transformers' pipelines.

Each pipeline class answers one task of the registry (albert.tasks.registry), runs its model as
albert.runtime.policy prepared it, and shares its featurization and post-processing with fine-tuning's
evaluation (albert.tasks): `albert predict` and these pipelines give one output shape per task.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from albert.errors import InputError
from albert.inference.st_layout import DEFAULT_POOLING, POOLINGS, read_layout, write_layout
from albert.modeling.backbone import pool_hidden_states
from albert.modeling.early_exit import NO_EXITS, ExitPolicy
from albert.modeling.heads import MODEL_CLASSES, AlbertForPreTraining, EarlyExitHead
from albert.modeling.pretrained import AlbertPreTrainedModel
from albert.runtime.policy import Runtime, prepare_for_inference, resolve_runtime
from albert.tasks.base import Featurizer, with_passes
from albert.tasks.batching import MAX_BATCH_TOKENS, Steps, finish, length_batches, pad_batch
from albert.tasks.choice import ChoiceFeatures, Question
from albert.tasks.fill_mask import fill_mask
from albert.tasks.qa import QAExample, QAFeatures
from albert.tasks.registry import TASKS, Task, check_input, get_task
from albert.tasks.sequence import ORDER_LABELS, classification_output, kind_of, label_names
from albert.tasks.tokens import Entities, iter_entities, iter_first_piece_words
from albert.tokenization.tokenizer import AlbertTokenizer

logger = logging.getLogger(__name__)


class Pipeline:
    task: Task
    __call__: Callable[..., Any]  # each task's own signature: (inputs, **its parameters)

    def __init__(self, model: AlbertPreTrainedModel, tokenizer: AlbertTokenizer, runtime: Runtime,
                 compile: bool = False) -> None:
        self.model = prepare_for_inference(model, runtime, compile)
        self.tokenizer = tokenizer
        self.runtime = runtime
        self.device = runtime.device

    ignored_weights: tuple[str, ...] = ()  # weights the pipeline never reads (a checkpoint may lack them)

    @classmethod
    def load_model(cls, name_or_path: str | Path) -> AlbertPreTrainedModel:
        """The model, every weight the pipeline reads from the checkpoint: a head it lacks would answer at random.
        Loaded as the task's first head, or as another of its heads where the directory was saved from one."""
        from albert.modeling.pretrained import saved_architecture

        saved = saved_architecture(name_or_path)
        architecture = saved if saved in cls.task.heads[1:] else cls.task.heads[0]
        return MODEL_CLASSES[architecture].from_pretrained(name_or_path, allow_missing=cls.is_ignored_weight)

    @classmethod
    def is_ignored_weight(cls, key: str) -> bool:
        return any(key.startswith(u) for u in cls.ignored_weights)

    def compact(self, *args: Any, **kwargs: Any) -> Any:
        """The answers as `albert <task>` writes them and the server sends them: the same values, where a task has a
        compact form for a long answer kept in it until written (a long text's entities: TokenClassificationPipeline).
        """
        return self(*args, **kwargs)

    def warm_up(self) -> None:
        """Compile a `--compile` model for every kind of batch it meets, on the task's example. Why: torch.compile
        compiles apart for a size of 1 (a batch of one row, one [MASK]) and for larger ones, so a model compiled on
        one request compiles again, for up to a minute, on the first of the other kind."""
        for inputs in self.warm_up_inputs():
            self(inputs)

    def warm_up_inputs(self) -> list[Any]:
        item = check_input(self.task, self.task.example, 1)
        return [[item], [item, item]]  # lists, as the server's batcher calls it


class FillMaskPipeline(Pipeline):
    task = TASKS["fill-mask"]

    def __call__(self, inputs: str | list[str], top_k: int = 5) -> Any:
        return fill_mask(self.tokenizer, inputs, top_k, self.model.config.max_position_embeddings, self._logits)

    def warm_up_inputs(self) -> list[Any]:
        one = self.task.example["text"]
        two = f"{one} {one}"  # two masks: the count of [MASK] positions is a size too
        return [[one], [one, one], [two], [two, two]]

    def _logits(self, enc: dict[str, list[list[int]]], positions: list[list[int]]) -> Any:
        inputs = {k: torch.as_tensor(v, device=self.device) for k, v in enc.items()}
        with torch.inference_mode():  # the last layer and the head run at the [MASK] positions only
            out = self.model(**inputs, mlm_positions=torch.as_tensor(positions, device=self.device))
        return out.logits.float().cpu().numpy()


class BatchedPipeline(Pipeline):
    batch_size = 32
    max_batch_tokens = MAX_BATCH_TOKENS

    def _pad_forward(self, rows: list[dict[str, list[int]]], read: Callable[[Any, int, int], Any], model: Any = None,
                     **options: Any) -> list[Any]:
        """Run rows (input_ids, token_type_ids) in length buckets → read(output, row in the batch, row's length) of
        each row, in input order. Each batch's output is read as soon as it exists, so only one batch's outputs are
        alive at a time (held for all the batches of 256 inputs, a chunk of long texts raised `embed --file`'s peak by
        hundreds of MB). `options`: the model's keyword arguments beside the tensors (an exit policy)."""
        out: list[Any] = [None] * len(rows)
        lengths = [len(r["input_ids"]) for r in rows]
        for idx, length in length_batches(lengths, self.model.config.max_position_embeddings, self.batch_size,
                                          self.max_batch_tokens):
            batch = pad_batch([rows[i]["input_ids"] for i in idx], [rows[i]["token_type_ids"] for i in idx],
                              self.tokenizer.pad_token_id, length)
            with torch.inference_mode():
                result = (model or self.model)(**{k: torch.tensor(v, device=self.device) for k, v in batch.items()},
                                               **options)
            for b, i in enumerate(idx):
                out[i] = read(result, b, len(rows[i]["input_ids"]))
            del result
        return out

    def _encode(self, texts: list[str], pairs: list[Any] | None = None) -> list[dict[str, list[int]]]:
        enc = self.tokenizer(texts, pairs, truncation=True, max_length=self.model.config.max_position_embeddings)
        return [{"input_ids": enc["input_ids"][i], "token_type_ids": enc["token_type_ids"][i]}
                for i in range(len(texts))]


def _as_list(inputs: Any) -> tuple[list[Any], bool]:
    return ([inputs], True) if isinstance(inputs, (str, dict)) else (list(inputs), False)


class FeatureExtractionPipeline(BatchedPipeline):
    """Sentence vectors pooled from the last hidden states (mean over the text's tokens by default, as
    sentence-transformers pools), optionally L2-normalised. A sentence-transformers directory's own pooling and
    normalisation are its defaults."""

    task = TASKS["feature-extraction"]
    ignored_weights = ("pooler.",)  # vectors are hidden states, not the pooler's output
    default_pooling = DEFAULT_POOLING
    default_normalize = False

    def __call__(self, inputs: str | list[str], pooling: str = "auto", normalize: bool | None = None) -> Any:
        pooling = self.default_pooling if pooling == "auto" else pooling
        if pooling not in POOLINGS:
            raise InputError(f"pooling must be one of auto, {', '.join(POOLINGS)}; got {pooling!r}")
        normalize = self.default_normalize if normalize is None else normalize
        texts, single = _as_list(inputs)

        def vector(result: Any, b: int, n: int) -> list[float]:
            h = result.last_hidden_state[b:b + 1, :n].float()  # (1, T, H): the text's tokens, [CLS] and [SEP] included
            v = pool_hidden_states(h, h.new_ones(1, n), pooling)[0]
            if normalize:
                v = torch.nn.functional.normalize(v, dim=0)
            return v.cpu().tolist()  # type: ignore[no-any-return]

        vectors = self._pad_forward(self._encode(texts), vector)
        return vectors[0] if single else vectors

    def save_pretrained(self, directory: str | Path, pooling: str = "auto", normalize: bool | None = None) -> Path:
        """A sentence-transformers directory of this model: SentenceTransformer(directory) gives these vectors."""
        pooling = self.default_pooling if pooling == "auto" else pooling
        normalize = self.default_normalize if normalize is None else normalize
        directory = Path(directory)
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        write_layout(directory, self.model.config.hidden_size, pooling, normalize,
                     self.model.config.max_position_embeddings)
        return directory


class TextClassificationPipeline(BatchedPipeline):
    """{label, score} per text (or text pair given as {"text": ..., "text_pair": ...}); top_k for several."""

    task = TASKS["text-classification"]

    def __call__(self, inputs: Any, top_k: int | None = 1, patience: int = 0, exit_threshold: float = 0.0) -> Any:
        """`patience`, `exit_threshold`: early exit (albert.modeling.early_exit), for a model fine-tuned with it."""
        items, single = _as_list(inputs)
        texts = [x["text"] if isinstance(x, dict) else x for x in items]
        pairs = [x.get("text_pair") if isinstance(x, dict) else None for x in items]
        # texts with a pair and texts without are encoded apart: a missing pair is not an empty one
        rows: list[dict[str, list[int]]] = [{} for _ in items]
        for paired in (False, True):
            idx = [i for i, p in enumerate(pairs) if (p is not None) == paired]
            if idx:
                encoded = self._encode([texts[i] for i in idx], [pairs[i] for i in idx] if paired else None)
                for i, row in zip(idx, encoded):
                    rows[i] = row
        cfg = self.model.config
        labels, kind = label_names(cfg), kind_of(cfg)
        options = exit_options(self.model, patience, exit_threshold)

        def answer(result: Any, b: int, _: int) -> Any:
            found = classification_output(result.logits[b].float().cpu().numpy(), labels, kind, top_k)
            return with_passes(found, None if result.exit_passes is None else int(result.exit_passes[b]))

        out = self._pad_forward(rows, answer, **options)
        return out[0] if single else out


def _best_tags(result: Any, b: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(score, tag id) of each piece of row b between its [CLS] and [SEP]: the most likely tag and its probability."""
    score, pred = result.logits[b, 1:length - 1].float().softmax(-1).max(-1)
    return score.numpy(), pred.numpy()


def _check_aggregation(strategy: str) -> None:
    if strategy not in ("first", "simple", "none"):
        raise InputError("aggregation_strategy must be 'first', 'simple' or 'none'")


# tokens per forward of a long text's windows: its activations (and so the command's peak memory) stay near a short
# text's, whatever the text's length
WINDOW_TOKENS = 2048
# a long text's entities are made this many at a time, each batch one turn of the model's thread (a text of millions of
# characters has hundreds of thousands: seconds of Python if made in one go)
ENTITY_TURN = 20_000


class TokenClassificationPipeline(BatchedPipeline):
    """Entities with character offsets. Aggregation 'first' (the default) tags each word by its first piece, the only
    piece fine-tuning labels (as transformers' "first"), and merges a B-/I- run of words into one entity; 'simple'
    merges runs of pieces (transformers' default, for models trained with every piece labelled)."""

    task = TASKS["token-classification"]

    def __call__(self, inputs: str | list[str], aggregation_strategy: str = "first") -> Any:
        """The texts that fit one window share forward passes (length-sorted batches); a longer one runs its
        windows by itself (`steps`). Lists of dicts, as transformers' pipeline gives."""
        answers = self.compact(inputs, aggregation_strategy)
        return list(answers) if isinstance(inputs, str) else [list(a) for a in answers]

    def compact(self, inputs: str | list[str], aggregation_strategy: str = "first") -> Any:
        """As __call__, a long text's entities left as albert.tasks.tokens.Entities (the same dicts, made as read)."""
        _check_aggregation(aggregation_strategy)
        texts, single = _as_list(inputs)
        room = self.model.config.max_position_embeddings - 2
        # (a text of more characters than this is past one window whatever its words: not tokenized here whole)
        encoded = self.tokenizer.encode_pieces([t if len(t) <= 16 * room else "" for t in texts], with_offsets=True)
        short = [i for i, (t, e) in enumerate(zip(texts, encoded)) if len(t) <= 16 * room and len(e.ids) <= room]
        cls, sep = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        rows = [{"input_ids": [cls, *encoded[i].ids, sep], "token_type_ids": [0] * (len(encoded[i].ids) + 2)}
                for i in short]
        out: list[Any] = [None] * len(texts)
        for i, (score, pred) in zip(short, self._pad_forward(rows, _best_tags)):
            offsets = np.asarray(encoded[i].offsets, dtype=np.int64).reshape(-1, 2)
            out[i] = list(self._iter_entities(texts[i], pred, score, offsets, aggregation_strategy))
        out = [found if found is not None else finish(self.steps(text, aggregation_strategy))
               for text, found in zip(texts, out)]
        return out[0] if single else out

    def steps(self, text: str, aggregation_strategy: str = "first") -> Steps[Entities]:
        """One text's entities a model call at a time (albert.tasks.batching.Steps); the entities of a long text are
        made ENTITY_TURN at a time too, each batch a turn, and held as columns (Entities)."""
        _check_aggregation(aggregation_strategy)
        tags, scores, offsets = yield from self._tag_pieces(text)
        entities = Entities(text)
        for entity in self._iter_entities(text, tags, scores, offsets, aggregation_strategy):
            entities.append(entity)
            if len(entities) % ENTITY_TURN == 0:
                yield 0
        return entities

    def _iter_entities(self, text: str, tags: np.ndarray, scores: np.ndarray, offsets: np.ndarray,
                       aggregation_strategy: str) -> Iterator[dict[str, Any]]:
        """The entities of `text` from each piece's tag, score and (start, end), lazily: pieces, words and tagged
        words are never all held, only the entities a caller keeps."""
        labels = self.model.config.id2label or {}
        pieces: Iterator[dict[str, Any]] = (
            {"entity": labels.get(int(t), str(int(t))), "score": float(sc), "index": i + 1, "start": int(st),
             "end": int(en)} for i, (t, sc, (st, en)) in enumerate(zip(tags, scores, offsets)))
        if aggregation_strategy == "first":
            pieces = iter_first_piece_words(pieces, text)
        tagged = (dict(p, word=text[p["start"]:p["end"]]) for p in pieces
                  if p["entity"] != "O" and p["end"] > p["start"])
        return tagged if aggregation_strategy == "none" else iter_entities(tagged, text)

    def _tag_pieces(self, text: str) -> Steps[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(tag id, score, (start, end)) of each piece of `text`, as arrays. A text longer than the model reads is
        tagged in overlapping windows (half a window apart; no entity past the limit is lost), each piece taking
        its tag from the window where it has the most context on both sides. The text is tokenized in parts and
        its windows go through the model WINDOW_TOKENS at a time, each a step, leaving only their best tags
        behind: memory follows the text's pieces (a few bytes each), not its windows' outputs."""
        limit = self.model.config.max_position_embeddings
        room = limit - 2
        step = room - room // 2
        id_parts, offset_parts = [], []
        for part in self.tokenizer.encode_parts(text):
            id_parts.append(np.asarray(part.ids, dtype=np.int32))
            offset_parts.append(np.asarray(part.offsets, dtype=np.int32).reshape(-1, 2))
            yield 0
        ids, offsets = np.concatenate(id_parts), np.concatenate(offset_parts)
        del id_parts, offset_parts
        n = len(ids)
        context = np.full(n, -1, dtype=np.int32)  # a piece's distance to its window's nearer end
        tags, scores = np.zeros(n, dtype=np.int32), np.zeros(n, dtype=np.float32)
        starts = list(range(0, max(n - room, 0) + step, step)) if n > room else [0]
        cls, sep = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        per_call = max(1, WINDOW_TOKENS // limit)  # windows per forward: a token budget, not batch_size rows
        for k in range(0, len(starts), per_call):
            group = starts[k:k + per_call]
            rows = [{"input_ids": [cls, *ids[s:s + room].tolist(), sep], "token_type_ids": [0] * (min(room, n - s) + 2)}
                    for s in group]
            for s, (score, pred) in zip(group, self._pad_forward(rows, _best_tags)):
                count = len(pred)  # pieces between [CLS] and [SEP]
                j = np.arange(count)
                here = np.minimum(j, count - 1 - j)
                better = here > context[s:s + count]
                context[s:s + count][better] = here[better]
                tags[s:s + count][better] = pred[better]
                scores[s:s + count][better] = score[better]
            yield sum(len(r["input_ids"]) for r in rows)
        return tags, scores, offsets


class QuestionAnsweringPipeline(Pipeline):
    """{answer, score, start, end, no_answer_score} from a context of any length (windows with doc stride)."""

    task = TASKS["question-answering"]

    def __call__(self, question: str | list[dict[str, str]] | None = None, context: str | None = None,
                 max_answer_length: int = 30, doc_stride: int = 128, max_seq_length: int = 384,
                 handle_impossible_answer: bool = False) -> Any:
        if isinstance(question, list):
            items = question
        elif question is not None and context is not None:
            items = [{"question": question, "context": context}]
        else:
            raise InputError("pass question= and context=, or a list of {question, context}")
        examples = [QAExample(str(i), x["question"], x["context"], [], [], f"input {i}") for i, x in enumerate(items)]
        features = self._features(max_answer_length, doc_stride, max_seq_length)
        out = [a.decided(handle_impossible_answer).output()
               for a in features.predict_answers(self.model, examples, self.device)]
        return out[0] if len(out) == 1 and not isinstance(question, list) else out

    def steps(self, item: dict[str, str], max_answer_length: int = 30, doc_stride: int = 128,
              max_seq_length: int = 384, handle_impossible_answer: bool = False) -> Steps[dict[str, Any]]:
        """One {question, context}'s answer a model call at a time (albert.tasks.batching.Steps)."""
        example = QAExample("0", item["question"], item["context"], [], [], "input 0")
        features = self._features(max_answer_length, doc_stride, max_seq_length, stepwise=True)
        answers = yield from features.answer_steps(self.model, [example], self.device)
        return answers[0].decided(handle_impossible_answer).output()

    def _features(self, max_answer_length: int, doc_stride: int, max_seq_length: int,
                  stepwise: bool = False) -> QAFeatures:
        """Stepwise: a model call per WINDOW_TOKENS (each a step others may come between), else 32 windows."""
        from albert.modeling.heads import AlbertForQuestionAnsweringWithAnswerability

        length = min(max_seq_length, self.model.config.max_position_embeddings)
        return QAFeatures(self.tokenizer, length, eval_batch_size=max(1, WINDOW_TOKENS // length) if stepwise else 32,
                          doc_stride=doc_stride, max_answer_length=max_answer_length,
                          answerability_head=isinstance(self.model, AlbertForQuestionAnsweringWithAnswerability))


class MultipleChoicePipeline(Pipeline):
    """{label (index), scores} for an article/question and its options."""

    task = TASKS["multiple-choice"]

    def __call__(self, inputs: dict[str, Any] | list[dict[str, Any]], max_seq_length: int = 512, patience: int = 0,
                 exit_threshold: float = 0.0) -> Any:
        """`patience`, `exit_threshold`: early exit (albert.modeling.early_exit), for a model fine-tuned with it."""
        items, single = _as_list(inputs)
        qs = [Question(x.get("article", x.get("context", "")), x["question"], list(x["options"]), None, f"input {i}")
              for i, x in enumerate(items)]
        features: Featurizer = ChoiceFeatures(self.tokenizer,
                                              min(max_seq_length, self.model.config.max_position_embeddings), 1)
        policy = exit_options(self.model, patience, exit_threshold).get("exit_policy")
        if policy is not None:
            features = features.with_exit_policy(policy)
        rows = features.predict_rows(self.model, qs, self.device)
        return rows[0] if single else rows


class SentenceOrderPipeline(BatchedPipeline):
    """Is segment B the continuation of A? {label: in_order | swapped, score}, from pretraining's SOP head or from a
    classifier fine-tuned for sentence order (`albert finetune --task sentence-order`), which may exit early."""

    task = TASKS["sentence-order"]

    def __init__(self, model: AlbertPreTrainedModel, tokenizer: AlbertTokenizer, runtime: Runtime,
                 compile: bool = False) -> None:
        self.pretraining = isinstance(model, AlbertForPreTraining)
        if not self.pretraining and label_names(model.config) != ORDER_LABELS:
            raise InputError(f"sentence-order needs pretraining's SOP head or a model fine-tuned with --task "
                             f"sentence-order (labels {', '.join(ORDER_LABELS)}); this one's labels are "
                             f"{', '.join(label_names(model.config)[:6])}")
        super().__init__(model, tokenizer, runtime, compile)

    def __call__(self, inputs: dict[str, str] | list[dict[str, str]], patience: int = 0,
                 exit_threshold: float = 0.0) -> Any:
        """`patience`, `exit_threshold`: early exit (albert.modeling.early_exit), for a model fine-tuned with it."""
        items, single = _as_list(inputs)
        rows = self._encode([x["first"] for x in items], [x["second"] for x in items])
        options = exit_options(self.model, patience, exit_threshold)

        def answer(result: Any, b: int, _: int) -> Any:
            probs = (result.sop_logits if self.pretraining else result.logits)[b].float().softmax(-1)
            k = int(probs.argmax())
            passes = None if self.pretraining or result.exit_passes is None else int(result.exit_passes[b])
            return with_passes({"label": ORDER_LABELS[k], "score": float(probs[k])}, passes)

        out = self._pad_forward(rows, answer, **options)
        return out[0] if single else out


def exit_options(model: AlbertPreTrainedModel, patience: int, threshold: float) -> dict[str, Any]:
    """The model's keyword arguments for early exit: an exit policy where one is asked, else none, and the model
    runs every pass as always. The model checks the policy against its classifiers (EarlyExitHead._policy); a model
    that classifies no whole input (pretraining's SOP head) has none to check."""
    policy = ExitPolicy(patience, threshold)
    if not policy.active:
        return {}
    if not isinstance(model, EarlyExitHead):
        raise InputError(NO_EXITS)
    return {"exit_policy": policy}


# the pipeline class of each task in the registry
PIPELINES: dict[str, type[Pipeline]] = {cls.task.name: cls for cls in (
    FillMaskPipeline, FeatureExtractionPipeline, TextClassificationPipeline, TokenClassificationPipeline,
    QuestionAnsweringPipeline, MultipleChoicePipeline, SentenceOrderPipeline)}
assert set(PIPELINES) == set(TASKS), "every task of the registry needs a pipeline class"


def pipeline(task: str, model: str | Path | AlbertPreTrainedModel | None = None,
             tokenizer: str | Path | AlbertTokenizer | None = None, device: str = "auto",
             precision: str = "auto", compile: bool = False) -> Any:
    """Build a pipeline for `task` (a name of albert.tasks.registry, or transformers' alias for one) on a model
    name, directory or object (default: the task's embedded model)."""
    cls = PIPELINES[get_task(task).name]
    model = get_task(task).default_model if model is None else model
    runtime = resolve_runtime(device, precision)
    layout = None
    if isinstance(model, AlbertPreTrainedModel):
        if tokenizer is None:
            raise InputError("pass tokenizer= with a model object")
        loaded = model
    else:
        if cls is FeatureExtractionPipeline:  # a sentence-transformers directory: the model in it, its pooling
            from albert.io.hub import resolve_model_dir

            layout = read_layout(resolve_model_dir(model))
            model = layout.model_dir if layout is not None else model
        loaded = cls.load_model(model)
        tokenizer = tokenizer if tokenizer is not None else model
    tok = tokenizer if isinstance(tokenizer, AlbertTokenizer) else AlbertTokenizer.from_pretrained(tokenizer)
    pipe = cls(loaded, tok, runtime, compile)
    if layout is not None and isinstance(pipe, FeatureExtractionPipeline):
        pipe.default_pooling, pipe.default_normalize = layout.pooling, layout.normalize
    return pipe
