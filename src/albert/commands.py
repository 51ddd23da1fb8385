"""What each `albert` subcommand does once its arguments are parsed (albert.cli builds the parser and handles
errors): read its inputs, call one library function, print. Library modules are imported inside the commands,
so that a command loads only what it uses (torch alone takes seconds to import on a small CPU)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from albert.tasks.registry import Task

CHUNK = 256  # inputs per pipeline call; a progress bar appears past one chunk
STOP_ENV = "ALBERT_TEST_STOP_AT_STEP"


def stop_for_tests() -> Callable[[int], None] | None:
    """With $ALBERT_TEST_STOP_AT_STEP=N, a training command stops its own process (SIGSTOP) once step N's record
    and checkpoint are written: the kill-and-resume tests kill it at that known point, an event to wait on instead
    of a race against the clock. Without the variable: nothing."""
    at = int(os.environ.get(STOP_ENV, "0") or 0)
    if not at:
        return None

    def stop(step: int) -> None:
        if step == at:
            os.kill(os.getpid(), signal.SIGSTOP)
    return stop


# ----- the inputs of the inference commands -----
def read_inputs(args_inputs: list[str] | None, file: str | None, stdin_json: bool = False) -> Iterator[Any]:
    """Inputs from arguments, a --file (.txt, .jsonl, .csv/.tsv or .parquet), or stdin lines (in that order of
    preference). Stdin lines are texts, or JSON objects for the commands whose inputs have fields (`stdin_json`:
    answer, choose). With neither arguments nor --file, a terminal on stdin gets the usage, not a silent wait."""
    from albert.errors import InputError
    from albert.io.files import iter_inputs, parse_json

    if args_inputs:
        for n, text in enumerate(args_inputs, 1):
            yield _argument_text(text, n)
        return
    if file:
        yield from (item for _, item in iter_inputs(file))
        return
    if sys.stdin is None or sys.stdin.isatty():
        raise InputError("no input: pass texts as arguments, --file FILE, or lines on stdin (see --help)")
    for n, line in enumerate(sys.stdin.buffer, 1):
        try:
            text = line.decode("utf-8").removeprefix("\ufeff").rstrip("\n").rstrip("\r")
        except UnicodeDecodeError:
            raise InputError(f"<stdin>:{n}: not UTF-8 text") from None
        if text.strip():
            yield parse_json(text, f"<stdin>:{n} (one JSON object per line)") if stdin_json else text


def _argument_text(text: str, n: int) -> str:
    """A command-line text; bytes that were not UTF-8 arrive as lone surrogates (PEP 383) and are refused."""
    from albert.errors import InputError

    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"argument {n} is not valid UTF-8 text") from None
    return text


def task_inputs(task: Task, a: argparse.Namespace) -> list[Any]:
    """The command's inputs, each checked and shaped for the task's pipeline; none at all is an error.

    Texts come from arguments, --file or stdin lines; a task whose inputs have other fields takes them as
    flags (one input: `albert answer --question Q --context C`), else as JSON objects from --file or stdin.
    A text task's extra fields given as flags (classify --pair) apply to every input."""
    from albert.errors import InputError
    from albert.tasks.registry import check_input

    flags = {f.name: getattr(a, f.name) for f in task.fields if f.name != "text" and getattr(a, f.name) is not None}
    if not task.takes_text and flags:
        missing = [f for f in task.fields if f.required and f.name not in flags]
        if missing:
            given = ", ".join(f.cli_flag for f in task.fields if f.name in flags)
            raise InputError(f"{missing[0].cli_flag} is needed with {given}")
        raw: list[Any] = [flags]
    else:
        if not getattr(a, "text", None) and not a.file and (sys.stdin is None or sys.stdin.isatty()):
            a.parser.print_usage(sys.stderr)  # nothing given: the usage, not a silent wait for a terminal
        raw = list(read_inputs(getattr(a, "text", None), a.file, stdin_json=not task.takes_text))
        raw = [x | flags if isinstance(x, dict) else ({"text": x} | flags if flags else x) for x in raw]
    items = [check_input(task, x, n) for n, x in enumerate(raw, 1)]
    if not items:
        where = "text arguments, " if task.takes_text else "flags, "
        raise InputError(f"no input: pass {where}--file FILE.jsonl, or lines on stdin")
    return items


def stream(pipe: Callable[..., list[Any]], items: list[Any], skip: int = 0, **kwargs: Any) -> Iterator[Any]:
    """The pipeline's results over `items` from the `skip`-th on, CHUNK at a time, with a progress bar (stderr) past
    one chunk. The chunks are always the same (from the first input), so a resumed job's answers are those an
    uninterrupted job gives, bit for bit: the chunk a resume starts in is run whole and its first answers dropped."""
    first = skip - skip % CHUNK
    if len(items) - first <= CHUNK:  # no bar, and no tqdm import (part of fill-mask's start-up)
        yield from pipe(items[first:], **kwargs)[skip - first:]
        return
    from tqdm import tqdm

    from albert.runtime.memory import release_free_memory

    with tqdm(total=len(items), initial=skip, unit=" inputs", file=sys.stderr) as bar:
        for i in range(first, len(items), CHUNK):
            answers = pipe(items[i:i + CHUNK], **kwargs)
            yield from answers[max(0, skip - i):]
            bar.update(len(answers) - max(0, skip - i))
            release_free_memory()


def run_task(a: argparse.Namespace) -> None:
    """A pipeline command (derived from the task registry): one JSON line per input."""
    from albert.tasks.registry import TASKS, check_parameter

    task = TASKS[a.task_name]
    kwargs = {p.name: check_parameter(p, getattr(a, p.name)) for p in task.parameters if p.cli}
    items = task_inputs(task, a)
    with ResultLines(a.out, a.resume) as out:
        if out.done > len(items):
            from albert.errors import InputError

            raise InputError(f"{a.out} answers {out.done:,} inputs and there are {len(items):,}: it is not this "
                             "job's output")
        if task.name == "fill-mask":
            _fill_mask(a, items, kwargs, out)
            return
        from albert.inference.pipelines import pipeline  # imports torch

        pipe = pipeline(task.name, model=a.model, device=a.device, precision=a.precision, compile=a.compile)
        for result in stream(pipe.compact, items, out.done, **kwargs):
            out.write(result)


class ResultLines:
    """Where an inference command's answers go, one JSON line per input in input order: stdout, or --out FILE,
    each line written as it comes. A FILE that exists is refused (never replaced) unless --resume continues it:
    its complete lines answer the first inputs, which are skipped; a torn last line (a kill mid-write) is cut."""

    def __init__(self, path: str | None, resume: bool) -> None:
        from pathlib import Path

        from albert.errors import InputError

        self.done, self.file = 0, sys.stdout
        if path is None:
            if resume:
                raise InputError("--resume continues an --out file: give --out FILE")
            return
        out = Path(path)
        if out.exists() and not resume:
            raise InputError(f"{out} exists; albert never replaces a file: --resume continues it, or choose another "
                             "--out")
        if out.exists():
            if not out.is_file():
                raise InputError(f"{out} is not a regular file")
            whole = 0  # bytes up to the last newline; read in blocks (an output may hold gigabytes of vectors)
            with open(out, "r+b") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    self.done += block.count(b"\n")
                    if b"\n" in block:
                        whole = f.tell() - len(block) + block.rfind(b"\n") + 1
                f.truncate(whole)
        self.file = open(out, "a", encoding="utf-8")  # noqa: SIM115 (closed by __exit__)

    def write(self, result: Any) -> None:
        from albert.io.files import json_pieces

        for piece in json_pieces(result):
            self.file.write(piece)
        self.file.write("\n")
        if self.file is not sys.stdout:
            self.file.flush()

    def __enter__(self) -> ResultLines:
        return self

    def __exit__(self, *_: object) -> None:
        if self.file is not sys.stdout:
            self.file.close()


# ----- tokenizer and pretraining -----
def run_tokenizer_train(a: argparse.Namespace) -> None:
    from albert.tokenization.vocabulary import train_tokenizer

    tok = train_tokenizer(a.input, a.out, vocab_size=a.vocab_size, max_sentences=a.max_sentences,
                          character_coverage=a.character_coverage, do_lower_case=not a.cased,
                          keep_accents=a.keep_accents, seed=a.seed, progress=not a.quiet, field=a.field)
    print(f"wrote {a.out}/spiece.model ({tok.vocab_size} pieces)")


def run_tokenize(a: argparse.Namespace) -> None:
    from albert.tokenization.tokenizer import AlbertTokenizer

    tok = AlbertTokenizer.from_pretrained(a.tokenizer)
    enc = tok(a.text, a.pair, return_offsets_mapping=True)
    pieces = tok.convert_ids_to_tokens(enc["input_ids"])
    if a.json:
        print(json.dumps({"pieces": pieces, "ids": enc["input_ids"], "token_type_ids": enc["token_type_ids"],
                          "offsets": [list(o) for o in enc["offset_mapping"]]}, ensure_ascii=False))
        return
    for piece, i, (s, e), t in zip(pieces, enc["input_ids"], enc["offset_mapping"], enc["token_type_ids"]):
        print(f"{i:>6}  {piece:<20} {s:>5}-{e:<5} type {t}")


def run_data_prepare(a: argparse.Namespace) -> None:
    from albert.data.shards import prepare_data

    meta = prepare_data(a.input, a.tokenizer, a.out, eval_fraction=a.eval_fraction, workers=a.workers,
                        seed=a.seed, field=a.field, progress=not a.quiet)
    print(f"wrote {a.out}: train {meta['documents']['train']:,} documents / {meta['tokens']['train']:,} tokens, "
          f"eval {meta['documents']['eval']:,} documents / {meta['tokens']['eval']:,} tokens")


def given_settings(a: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags, {key: value}, each value read as YAML reads it."""
    from albert.train.settings import parse_value

    return {k.removeprefix("setting:"): v if isinstance(v, list) else parse_value(v)
            for k, v in vars(a).items() if k.startswith("setting:")}


def run_pretrain(a: argparse.Namespace) -> None:
    from albert.train.pretrain import pretrain
    from albert.train.settings import PretrainSettings, load_settings

    settings = load_settings(PretrainSettings, a.config, given_settings(a))
    final = pretrain(settings, resume=a.resume, on_step=stop_for_tests())
    print(f"final model: {final}")


def run_plot(a: argparse.Namespace) -> None:
    from albert.train.plot import plot_run

    print(f"wrote {plot_run(a.run_dir, a.out)}")


# ----- distillation -----
def run_distill(a: argparse.Namespace) -> None:
    from albert.train.distill import DistillSettings, distill
    from albert.train.settings import load_settings

    settings = load_settings(DistillSettings, a.config, given_settings(a))
    out = distill(settings, resume=a.resume, on_step=stop_for_tests())
    print(f"distilled model: {out}")


# ----- fine-tuning -----
def run_finetune(a: argparse.Namespace) -> None:
    from albert.train.finetune import finetune
    from albert.train.finetune_settings import finetune_settings

    settings = finetune_settings({**given_settings(a), "recipe": a.recipe}, a.config)
    out = finetune(settings, resume=a.resume, on_step=stop_for_tests())
    print(f"fine-tuned model: {out}")


def run_evaluate(a: argparse.Namespace) -> None:
    from albert.modeling.early_exit import ExitPolicy
    from albert.train.finetune import evaluate_dir

    policy = ExitPolicy(a.patience, a.exit_threshold)
    print(json.dumps(evaluate_dir(a.model, a.data, a.device, a.precision, a.compile, policy), indent=2))


def run_predict(a: argparse.Namespace) -> None:
    from albert.modeling.early_exit import ExitPolicy
    from albert.train.finetune import predict_dir

    policy = ExitPolicy(a.patience, a.exit_threshold)
    for row in predict_dir(a.model, a.data, a.device, a.precision, a.compile, policy):
        print(json.dumps(row, ensure_ascii=False))


# ----- inference -----
def _fill_mask(a: argparse.Namespace, texts: list[str], kwargs: dict[str, Any], out: ResultLines) -> None:
    """fill-mask's engines (ONNX Runtime starts without torch) and its human-readable output."""
    from albert.inference.fast_fill_mask import load_fill_mask
    from albert.tasks.fill_mask import check_fillers

    for n, text in enumerate(texts, 1):  # each text's answers, counted before any work (the server's rule)
        check_fillers([text], kwargs["top_k"], a.max_fillers, f"input {n}")
    fm = load_fill_mask(a.model, a.engine, a.device, a.precision, a.compile)
    for text, result in zip(texts[out.done:], stream(fm, texts, out.done, **kwargs)):
        if a.json or out.file is not sys.stdout:  # a file gets JSON lines
            out.write(result)
            continue
        if len(texts) > 1:
            print(f"> {text}")
        groups = result if result and isinstance(result[0], list) else [result]
        for n, group in enumerate(groups):
            if len(groups) > 1:
                print(f"[MASK] #{n + 1}")
            for r in group:
                print(f"{r['score']:.4f}  {r['token_str']:<15} {r['sequence']}")


def run_serve(a: argparse.Namespace) -> None:
    from albert.serving.launch import ServeSettings, serve_model

    values = {f.name: getattr(a, f.name) for f in dataclasses.fields(ServeSettings)}
    serve_model(ServeSettings(**{**values, "model": values["model"] or "", "cors_origins": tuple(a.cors_origins)}))
    # stopped: end the process now. A model call nobody waits for may still be running on the model's thread, and
    # the interpreter's teardown of torch under it aborts the process (or takes over a second)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


# ----- export and conversion -----
def run_export_onnx(a: argparse.Namespace) -> None:
    from albert.convert.export import export_model_onnx

    info = export_model_onnx(a.model, a.out, a.architecture, opset=a.opset, quantize=a.quantize,
                             share_weights=a.share_weights, full_depth=a.full_depth)
    print(f"wrote {info['path']} ({info['bytes'] / 1e6:.1f} MB; outputs {', '.join(info['outputs'])})")


def run_export_sentence_transformers(a: argparse.Namespace) -> None:
    from albert.convert.export import export_sentence_transformers
    from albert.tasks.registry import EMBED_MODEL

    print(f"wrote {export_sentence_transformers(a.model or EMBED_MODEL, a.out, a.pooling, a.normalize)}")


def layer_numbers(text: str) -> list[int]:
    """--layers 0,2,4 → [0, 2, 4]; anything else one line."""
    from albert.errors import InputError

    parts = text.split(",")
    if not all(p.strip().isdigit() for p in parts):
        raise InputError(f"--layers takes layer numbers separated by commas, e.g. 0,2,4; got {text!r}")
    return [int(p) for p in parts]


def run_convert(a: argparse.Namespace) -> None:
    from albert.errors import InputError

    if sum(x is not None for x in (a.from_tf, a.from_bert, a.for_finetuning)) != 1:
        raise InputError("convert: give one of --from-tf PREFIX (with --config), --from-bert DIR or "
                         "--for-finetuning DIR")
    if a.for_finetuning is not None:
        from albert.convert.for_finetuning import fit_for_finetuning

        if not a.texts:
            raise InputError("convert --for-finetuning needs --texts (text files whose tokens set the scale)")
        scale, scaled = fit_for_finetuning(a.for_finetuning, a.out, a.texts)
        print(f"wrote {a.out}: the last LayerNorm scaled by {scale:g} (RMS per dimension near 1), the pooler the "
              f"identity; sentence vectors' directions unchanged" if scaled else
              f"wrote {a.out}: the pooler {scale:g} times the identity (the last pass shares its layer group, whose "
              f"states stay as they are: tagging and QA heads read them unscaled); sentence vectors unchanged")
        return
    if a.from_bert is not None:
        from albert.convert.bert import convert_bert

        layers = None if a.layers is None else layer_numbers(a.layers)
        made = convert_bert(a.from_bert, a.out, a.tokenizer, layers, a.passes, a.embedding_size)
        print(f"wrote {a.out}: BERT layers {made['layers']} as ALBERT groups run {made['passes']} times, embeddings "
              f"of {made['embedding_size']}, vocabulary of {made['vocab_size']:,}, {made['parameters']:,} parameters")
        return
    if a.config is None:
        raise InputError("convert --from-tf needs --config (the original albert_config.json)")
    from albert.convert.tf import convert_tf_checkpoint

    info = convert_tf_checkpoint(a.from_tf, a.config, a.out)
    print(f"wrote {a.out} (skipped {len(info['skipped'])} optimizer/step entries; "
          f"unknown: {', '.join(info['unknown']) or 'none'}; newly initialised: "
          f"{', '.join(info['initialised']) or 'none'})")
