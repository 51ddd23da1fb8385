"""The `albert` command: the parser (each subcommand's flags, its handler in albert.commands) and `main`.

Known failures (bad input, missing files, invalid settings) print one line `albert: error: ...`
and exit with status 2; no traceback. Library modules are imported inside the commands, so that a
command loads only what it uses (torch alone takes seconds to import on a small CPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import logging
import os
import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from albert import commands

if TYPE_CHECKING:
    from albert.tasks.registry import Task

# the runtime's precisions, without importing torch (albert.runtime.policy does): a test checks they agree
PRECISIONS = ("auto", "bf16", "fp32", "int8")


# ----- the parser -----
def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command table: each group of subcommands is added by its own function (below), whose handlers are in
    albert.commands, each one call into the library. `command`: the one being run, whose settings' flags are made
    (pretrain, distill, finetune)."""
    from albert.version import __version__

    p = _OneLineParser(prog="albert", description="ALBERT: pretrain, fine-tune and run A Lite BERT.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    p.add_argument("--version", action="version", version=f"albert {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)
    for add in COMMAND_GROUPS:
        if add is _add_training_commands:
            _add_training_commands(sub, command)
        else:
            add(sub)
    return p


def _add_tokenizer_commands(sub: Any) -> None:
    """tokenizer train, tokenize."""
    from albert.tasks.registry import DEFAULT_MODEL

    tk = sub.add_parser("tokenizer", help="tokenizer tools").add_subparsers(dest="tokenizer_command", required=True)
    t = tk.add_parser("train", help="train a SentencePiece vocabulary with ALBERT's settings")
    t.add_argument("--input", nargs="+", required=True, help=".txt/.jsonl/.parquet, optionally .gz/.xz")
    t.add_argument("--vocab-size", type=int, default=30000)
    t.add_argument("--out", required=True, help="a new directory (an existing tokenizer is never overwritten)")
    t.add_argument("--max-sentences", type=int, default=2_000_000, help="lines sampled from big corpora")
    t.add_argument("--character-coverage", type=float, default=0.99995)
    t.add_argument("--cased", action="store_true", help="do not lowercase")
    t.add_argument("--keep-accents", action="store_true")
    t.add_argument("--field", default="text", help="text column of .jsonl/.parquet input")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=commands.run_tokenizer_train)

    t = sub.add_parser("tokenize", help="show pieces, ids and offsets of a text")
    t.add_argument("text")
    t.add_argument("--pair", default=None)
    t.add_argument("--tokenizer", default=DEFAULT_MODEL)
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=commands.run_tokenize)


def _add_data_commands(sub: Any) -> None:
    """data prepare."""
    dp = sub.add_parser("data", help="pretraining data").add_subparsers(dest="data_command", required=True)
    t = dp.add_parser("prepare", help="tokenize raw text into memory-mapped train/eval shards")
    t.add_argument("--input", nargs="+", required=True)
    t.add_argument("--tokenizer", required=True)
    t.add_argument("--out", required=True, help="a new or empty directory")
    t.add_argument("--eval-fraction", type=float, default=0.01)
    t.add_argument("--workers", type=int, default=0)
    t.add_argument("--field", default="text", help="text column of .jsonl/.parquet input")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=commands.run_data_prepare)


def _add_training_commands(sub: Any, settings_for: str | None = None) -> None:
    """pretrain, plot, distill, finetune, evaluate, predict. The settings' flags of pretrain, distill and finetune
    are made from their settings' dataclasses, for the command being run only (`settings_for`: importing them costs
    every other command its start)."""
    from albert.tasks.registry import EXIT_PARAMETERS

    def settings_command(name: str, help: str, settings: tuple[str, str], func: Callable[..., None]) -> Any:
        t = sub.add_parser(name, help=help, allow_abbrev=False)
        t.add_argument("--config", default=None, help="settings YAML (see recipes/); the flags below win over it")
        t.add_argument("--resume", action="store_true", help="continue the run in run_dir from its last checkpoint")
        t.set_defaults(func=func, settings=settings)
        if name == settings_for:
            _add_setting_flags(t, *settings)
        return t

    settings_command("pretrain", "pretrain (MLM + SOP)", ("albert.train.settings", "PretrainSettings"),
                     commands.run_pretrain)

    t = sub.add_parser("plot", help="draw a run's curves (metrics.jsonl) to a PNG")
    t.add_argument("run_dir")
    t.add_argument("--out", default=None)
    t.set_defaults(func=commands.run_plot)

    settings_command("distill", "distil a teacher into an ALBERT student",
                     ("albert.train.distill_settings", "DistillSettings"), commands.run_distill)
    t = settings_command("finetune", "fine-tune on a labelled task",
                         ("albert.train.finetune_settings", "FinetuneSettings"), commands.run_finetune)
    t.add_argument("--recipe", default=None, help="the paper's hyperparameters for a task, e.g. mrpc, sst-2 (below "
                   "--config and the flags)")

    for name, func, what in (("evaluate", commands.run_evaluate, "score a fine-tuned model on a labelled file"),
                             ("predict", commands.run_predict,
                              "predictions of a fine-tuned model, one JSON line per input row")):
        t = sub.add_parser(name, help=what)
        t.add_argument("--model", required=True)
        t.add_argument("--data", required=True)
        for p in EXIT_PARAMETERS:
            t.add_argument(p.cli_flag, dest=p.name, type=p.type, default=p.default,  # type: ignore[arg-type]
                           help=f"{p.help} (default {p.default})")
        _add_runtime_args(t)
        t.set_defaults(func=func)


def _add_task_commands(sub: Any) -> None:
    """one pipeline command per task of the registry (fill-mask, embed, classify, ...)."""
    from albert.tasks.registry import MAX_FILLERS, TASKS

    for task in TASKS.values():
        t = _add_task_command(sub, task)
        if task.name == "fill-mask":
            t.add_argument("--json", action="store_true", help="one JSON line per input")
            t.add_argument("--engine", default="auto", choices=["auto", "torch", "onnxruntime"],
                           help="auto: ONNX Runtime where the model directory ships model.onnx (fast start), else "
                                "torch")
            t.add_argument("--max-fillers", type=int, default=MAX_FILLERS,
                           help="answers per text at most, counted as its [MASK]s × --top-k (each a rebuilt "
                                "sentence); a text asking for more is refused before any work (default 10000)")


def _add_serve_command(sub: Any) -> None:
    """serve."""
    from albert.serving.serve_settings import ServeSettings

    t = sub.add_parser("serve", help="answer HTTP requests (JSON) with a pipeline; concurrent requests batched",
                       description="An ASGI app (FastAPI on uvicorn): POST the task's route or / (the Hugging Face "
                       "inference API's shapes), /embed for text-embeddings-inference clients; GET / (a page), /docs, "
                       "/openapi.json, /health, /info, /metrics. Needs the serve extra: pip install "
                       "'albert-lm[serve]'.")
    for f in dataclasses.fields(ServeSettings):  # the flags are the settings' fields
        meta = f.metadata
        if meta.get("cli", True):
            flag = meta.get("flag") or "--" + f.name.replace("_", "-")
            if meta.get("append"):
                t.add_argument(flag, dest=f.name, action="append", default=[], help=meta["help"])
            else:
                kind = f.type if f.type in (int, float) else str
                t.add_argument(flag, dest=f.name, type=kind, default=f.default, choices=meta.get("choices"),
                               help=meta["help"])
    _add_runtime_args(t)
    t.set_defaults(func=commands.run_serve)


def _add_export_commands(sub: Any) -> None:
    """export onnx, export sentence-transformers."""
    ex = sub.add_parser("export", help="export a model").add_subparsers(dest="export_format", required=True)
    t = ex.add_parser("onnx", help="ONNX with dynamic batch/sequence axes, the shared layer stored once")
    t.add_argument("--model", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--architecture", default=None, help="AlbertModel, AlbertForMaskedLM, ... (default: the config's)")
    t.add_argument("--opset", type=int, default=18)
    t.add_argument("--quantize", choices=["int8"], default=None, help="dynamic int8 weights for ONNX Runtime")
    t.add_argument("--share-weights", action="store_true",
                   help="store no weights: read them from the model directory's model.safetensors (--out must be "
                        "in that directory; albert fill-mask then starts through ONNX Runtime, without torch)")
    t.add_argument("--full-depth", action="store_true",
                   help="a model fine-tuned with early exit: export it at full depth (ONNX runs every pass; without "
                        "this flag such a model is refused)")
    t.set_defaults(func=commands.run_export_onnx)

    t = ex.add_parser("sentence-transformers", help="a sentence-transformers directory (modules.json, pooling): "
                      "SentenceTransformer(DIR) then gives albert embed's vectors")
    t.add_argument("--model", default=None, help="default: albert-small-en-embed, the embedded sentence-vector model")
    t.add_argument("--out", required=True, help="a new directory")
    t.add_argument("--pooling", choices=["auto", "cls", "mean", "max", "mean_sqrt_len"], default="auto",
                   help="auto: the model directory's own (sentence-transformers), else mean")
    t.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                   help="add a Normalize module (default: as the directory says, else no)")
    t.set_defaults(func=commands.run_export_sentence_transformers)


def _add_convert_command(sub: Any) -> None:
    """convert --from-tf / --from-bert / --for-finetuning."""
    t = sub.add_parser("convert", help="convert an original TensorFlow ALBERT checkpoint (no TensorFlow needed), or a "
                       "BERT (a transformers/sentence-transformers directory) into an ALBERT with the same outputs, "
                       "or make a sentence-vector student ready for fine-tuning")
    t.add_argument("--from-tf", default=None, help="checkpoint prefix (PREFIX.index + PREFIX.data-*)")
    t.add_argument("--config", default=None, help="the original albert_config.json (with --from-tf)")
    t.add_argument("--from-bert", default=None, help="a BERT directory (config.json + model.safetensors): each layer "
                   "becomes an unshared ALBERT group, exactly")
    t.add_argument("--layers", default=None, help="with --from-bert: the BERT layers to keep, e.g. 0,2,4 (default all)")
    t.add_argument("--passes", type=int, default=None, help="with --from-bert: passes through the kept layers in all "
                   "(ALBERT's sharing; e.g. --layers 3 --passes 4: one layer run four times); a start for distillation")
    t.add_argument("--embedding-size", type=int, default=None, help="with --from-bert: factorize the embeddings to "
                   "this width (ALBERT's E < H) by an SVD of the word embeddings; a start for distillation")
    t.add_argument("--tokenizer", default=None, help="with --from-bert: an ALBERT SentencePiece tokenizer directory to "
                   "move the embeddings onto (each piece: the mean of its WordPiece tokens' embeddings); without it"
                   " the BERT's own vocabulary, row for row, as a SentencePiece model that segments as WordPiece does")
    t.add_argument("--for-finetuning", default=None, help="a sentence-vector student (e.g. from albert distill) "
                   "made ready for fine-tuning: its last hidden states scaled by a power of two to an RMS per "
                   "dimension near 1, its pooler the identity; its sentence vectors' directions unchanged")
    t.add_argument("--texts", nargs="*", default=[], help="with --for-finetuning: text files (a paragraph per line) "
                   "whose tokens set the scale (1,000 paragraphs of 8 words or more, drawn with seed 0)")
    t.add_argument("--out", required=True, help="a new directory (a model there is never overwritten)")
    t.set_defaults(func=commands.run_convert)


SETTINGS_COMMANDS = ("pretrain", "distill", "finetune")
COMMAND_GROUPS = (_add_tokenizer_commands, _add_data_commands, _add_training_commands, _add_task_commands,
                  _add_serve_command, _add_export_commands, _add_convert_command)


def _add_setting_flags(t: argparse.ArgumentParser, module: str, name: str) -> None:
    """A flag per setting of the dataclass `module.name` (albert.train.settings.setting_flags); each sets
    `setting:KEY` only when given, so that a YAML --config's value stands where the flag is absent."""
    import importlib

    from albert.train.settings import setting_flags

    group = t.add_argument_group("settings (also keys of the --config YAML)")
    for flag in setting_flags(getattr(importlib.import_module(module), name)):
        group.add_argument(*flag.options, dest=f"setting:{flag.key}", metavar=flag.metavar,
                           help=flag.help.replace("%", "%%"),
                           nargs="+" if flag.many else None, default=argparse.SUPPRESS)


def _add_task_command(sub: Any, task: Task) -> argparse.ArgumentParser:
    """A pipeline command from its registry entry: inputs (texts as arguments, or field flags, or --file, or
    stdin), the task's parameters as flags, --model and the runtime flags."""
    t = sub.add_parser(task.command, help=task.help, description=f"{task.help}. Output per input: {task.output}."
                       + (" Texts longer than the model are read in overlapping windows." if task.windows else ""))
    if task.takes_text:
        t.add_argument("text", nargs="*", help="texts (else --file, else stdin lines)")
    for f in task.fields:
        if f.name == "text":
            continue
        extra = " (for every input)" if task.takes_text else ""
        t.add_argument(f.cli_flag, dest=f.name, default=None,
                       nargs="+" if f.kind == "options" else None, help=f.help + extra)
    t.add_argument("--file", default=None, help="inputs: .txt (a text per line), .jsonl (a text or object per line), "
                   ".csv/.tsv (a header, then a row per input) or .parquet" +
                   ("" if task.takes_text else " (else JSON objects, one per line, on stdin)"))
    t.add_argument("--out", default=None, help="write the answers here, one JSON line per input, as they come "
                   "(default: stdout); a file that exists is refused unless --resume")
    t.add_argument("--resume", action="store_true", help="with --out: continue that file after a kill: the inputs "
                   "its complete lines answer are skipped (a torn last line is cut), the rest appended")
    for p in task.parameters:
        if not p.cli:
            continue
        if p.type is bool and p.default is None:  # unset: the model directory decides
            t.add_argument(p.cli_flag, dest=p.name, action=argparse.BooleanOptionalAction, default=None, help=p.help)
        elif p.type is bool:
            t.add_argument(p.cli_flag, dest=p.name, action="store_true", help=p.help)
        elif p.type in (int, float):
            t.add_argument(p.cli_flag, dest=p.name, type=p.type, default=p.default,  # type: ignore[arg-type]
                           help=f"{p.help} (default {p.default})")
        else:
            t.add_argument(p.cli_flag, dest=p.name, choices=p.type, default=p.default,
                           help=f"{p.help} (default {p.default})")
    t.add_argument("--model", default=task.default_model)
    _add_runtime_args(t)
    t.set_defaults(func=commands.run_task, task_name=task.name, parser=t)
    return t


def _add_runtime_args(t: argparse.ArgumentParser) -> None:
    t.add_argument("--device", default="auto", help="auto, cpu or cuda")
    t.add_argument("--precision", default="auto", choices=list(PRECISIONS),
                   help="auto: bf16 on CPUs with AMX/AVX512-BF16 and on GPUs, else fp32; int8: dynamic "
                        "quantization (CPU)")
    t.add_argument("--compile", action="store_true", help="torch.compile the model (slow first call)")


# the file system's answers that are about the machine, not about albert: a full disk or quota, a read-only file
# system, an I/O error, too many open files, a file too large
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EMFILE, errno.ENFILE, errno.EFBIG,
                errno.ENAMETOOLONG, errno.ELOOP, errno.EXDEV, errno.ETXTBSY}


def disk_fault(e: BaseException) -> str | None:
    """One line for a disk or file-system fault, from OSError or from the libraries that write files
    (safetensors, torch.save) and wrap it; None for anything else. What was written before it stays (a training
    run's last checkpoint is whole: it resumes)."""
    hint = " (what was written before is kept; free space or fix the path, then run again, with --resume for a run)"
    if isinstance(e, OSError) and e.errno in _DISK_ERRNOS:
        where = f"{e.filename}: " if e.filename else ""
        return f"{where}{e.strerror or e}{hint}"
    text = str(e)
    short = re.fullmatch(r"(\d+) requested and (\d+) written", text)  # numpy's tofile: a write cut short
    if isinstance(e, OSError) and short:
        return f"a write was cut short ({short.group(2)} of {short.group(1)} bytes written: is the disk full?){hint}"
    match = re.search(r"(?:os error|errno) (\d+)", text, re.IGNORECASE)
    if type(e).__name__ == "SafetensorError" and match and int(match.group(1)) in _DISK_ERRNOS:
        return f"{os.strerror(int(match.group(1)))}{hint}"
    if isinstance(e, RuntimeError) and "file write failed" in text:  # torch.save's writer
        return f"a file could not be written (torch: {text.splitlines()[0][:120]}){hint}"
    return None


def _close_progress_bars() -> None:
    """Close the progress bars an error left open, so that the error starts its own line."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", None) or []):
        bar.close()


def _known_errors() -> tuple[type[BaseException], ...]:
    """albert's own errors, and the operating system's answers about the paths a user named."""
    from albert.errors import AlbertError

    return (AlbertError, FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)


def parse_command_line(argv: list[str]) -> argparse.Namespace:
    """The arguments of `argv` (without the program's name), by the parser of its command."""
    command = next((a for a in argv if not a.startswith("-")), None)  # (the options before it take no values)
    if command in SETTINGS_COMMANDS:  # --max-steps is --max_steps, as settings were always given
        argv = [re.sub(r"^--([^=.]+)", lambda m: "--" + m.group(1).replace("-", "_"), a) for a in argv]
    parser = build_parser(command)
    args, extra = parser.parse_known_args(argv)
    if extra:
        unknown = [a for a in extra if a.startswith("-")] or extra
        what = "setting(s) or flag(s)" if command in SETTINGS_COMMANDS else "argument(s)"
        parser.error(f"unknown {what}: {' '.join(unknown)} (albert {command or ''} --help lists them)")
    return args


class UsageError(Exception):
    """A command line argparse cannot read: `main` says it in one line, as every albert error, with status 2."""


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_command_line(sys.argv[1:] if argv is None else list(argv))
    except UsageError as e:
        print(f"albert: error: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    func: Callable[..., None] = args.func
    try:
        func(args)
    except _known_errors() as e:
        _close_progress_bars()
        print(f"albert: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        fault = disk_fault(e)
        if fault is None:
            raise
        _close_progress_bars()
        print(f"albert: error: {fault}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("albert: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
