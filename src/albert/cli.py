"""The `albert` command: each subcommand parses its arguments and calls one library function.

Known failures (bad input, missing files, invalid settings) print one line `albert: error: ...`
and exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any

DEFAULT_MODEL = "albert-small-en"


def _tokenizer_train(a: argparse.Namespace) -> None:
    from albert.tokenizer import train_tokenizer

    tok = train_tokenizer(a.input, a.out, vocab_size=a.vocab_size, max_sentences=a.max_sentences,
                          character_coverage=a.character_coverage, do_lower_case=not a.cased,
                          keep_accents=a.keep_accents, seed=a.seed, progress=not a.quiet)
    print(f"wrote {a.out}/spiece.model ({tok.vocab_size} pieces)")


def _tokenize(a: argparse.Namespace) -> None:
    from albert.tokenizer import AlbertTokenizer

    tok = AlbertTokenizer.from_pretrained(a.tokenizer)
    enc = tok(a.text, a.pair, return_offsets_mapping=True)
    pieces = tok.convert_ids_to_tokens(enc["input_ids"])
    if a.json:
        print(json.dumps({"pieces": pieces, "ids": enc["input_ids"], "token_type_ids": enc["token_type_ids"],
                          "offsets": [list(o) for o in enc["offset_mapping"]]}, ensure_ascii=False))
        return
    for piece, i, (s, e), t in zip(pieces, enc["input_ids"], enc["offset_mapping"], enc["token_type_ids"]):
        print(f"{i:>6}  {piece:<20} {s:>5}-{e:<5} type {t}")


def _data_prepare(a: argparse.Namespace) -> None:
    from albert.data.shards import prepare_data

    meta = prepare_data(a.input, a.tokenizer, a.out, eval_fraction=a.eval_fraction, workers=a.workers,
                        seed=a.seed, field=a.field, progress=not a.quiet)
    print(f"wrote {a.out}: train {meta['documents']['train']:,} documents / {meta['tokens']['train']:,} tokens, "
          f"eval {meta['documents']['eval']:,} documents / {meta['tokens']['eval']:,} tokens")


def _pretrain(a: argparse.Namespace, extra: list[str]) -> None:
    from albert.train.pretrain import pretrain
    from albert.train.settings import PretrainSettings, load_settings, parse_overrides

    settings = load_settings(PretrainSettings, a.config, parse_overrides(extra))
    final = pretrain(settings, resume=a.resume)
    print(f"final model: {final}")


def _plot(a: argparse.Namespace) -> None:
    from albert.train.plot import plot_run

    out = plot_run(a.run_dir, a.out)
    print(f"wrote {out}")


def _fill_mask(a: argparse.Namespace) -> None:
    from albert.cli_more import require_inputs, stream, task_inputs
    from albert.inference.fill_mask import OnnxFillMaskPipeline, OnnxUnavailable

    texts = task_inputs("fill-mask", a)
    require_inputs(texts)

    fm: Callable[..., Any] | None = None
    # ONNX Runtime (fp32, CPU) answers in a fraction of the time torch takes to import, where the model ships a
    # model.onnx; asking for a device, bf16, int8 or compilation means the PyTorch engine
    plain = a.device in ("auto", "cpu") and a.precision in ("auto", "fp32") and not a.compile
    if a.engine == "onnxruntime" and not plain:
        raise OnnxUnavailable("--engine onnxruntime runs fp32 on the CPU; drop --device/--precision/--compile")
    if a.engine == "onnxruntime" or (a.engine == "auto" and plain):
        try:
            fm = OnnxFillMaskPipeline(a.model)
        except OnnxUnavailable as e:
            if a.engine == "onnxruntime":
                raise
            logging.getLogger("albert").info("fill-mask through PyTorch: %s", e)
    if fm is None:
        from albert.inference.pipelines import pipeline

        fm = pipeline("fill-mask", model=a.model, device=a.device, precision=a.precision, compile=a.compile)
    for text, result in zip(texts, stream(fm, texts, top_k=a.top_k)):
        if a.json:
            print(json.dumps(result, ensure_ascii=False))
            continue
        if len(texts) > 1:
            print(f"> {text}")
        groups = result if result and isinstance(result[0], list) else [result]
        for n, group in enumerate(groups):
            if len(groups) > 1:
                print(f"[MASK] #{n + 1}")
            for r in group:
                print(f"{r['score']:.4f}  {r['token_str']:<15} {r['sequence']}")


# ----- the parser -----
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="albert", description="ALBERT: pretrain, fine-tune and run A Lite BERT.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True)

    tk = sub.add_parser("tokenizer", help="tokenizer tools").add_subparsers(dest="tokenizer_command", required=True)
    t = tk.add_parser("train", help="train a SentencePiece vocabulary with ALBERT's settings")
    t.add_argument("--input", nargs="+", required=True, help=".txt/.jsonl/.parquet, optionally .gz/.xz")
    t.add_argument("--vocab-size", type=int, default=30000)
    t.add_argument("--out", required=True)
    t.add_argument("--max-sentences", type=int, default=2_000_000, help="lines sampled from big corpora")
    t.add_argument("--character-coverage", type=float, default=0.99995)
    t.add_argument("--cased", action="store_true", help="do not lowercase")
    t.add_argument("--keep-accents", action="store_true")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=_tokenizer_train)

    t = sub.add_parser("tokenize", help="show pieces, ids and offsets of a text")
    t.add_argument("text")
    t.add_argument("--pair", default=None)
    t.add_argument("--tokenizer", default=DEFAULT_MODEL)
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=_tokenize)

    dp = sub.add_parser("data", help="pretraining data").add_subparsers(dest="data_command", required=True)
    t = dp.add_parser("prepare", help="tokenize raw text into memory-mapped train/eval shards")
    t.add_argument("--input", nargs="+", required=True)
    t.add_argument("--tokenizer", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--eval-fraction", type=float, default=0.01)
    t.add_argument("--workers", type=int, default=0)
    t.add_argument("--field", default="text", help="text column of .jsonl/.parquet input")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=_data_prepare)

    t = sub.add_parser("pretrain", help="pretrain (MLM + SOP); settings from YAML, overridden by --key value")
    t.add_argument("--config", default=None, help="settings YAML (see recipes/)")
    t.add_argument("--resume", action="store_true", help="continue the run in run_dir from its last checkpoint")
    t.set_defaults(func=_pretrain, takes_extra=True)

    t = sub.add_parser("plot", help="draw a run's curves (metrics.jsonl) to a PNG")
    t.add_argument("run_dir")
    t.add_argument("--out", default=None)
    t.set_defaults(func=_plot)

    t = sub.add_parser("fill-mask", help="predict the [MASK] tokens of texts")
    t.add_argument("text", nargs="*", help="texts (else --file, else stdin lines)")
    t.add_argument("--file", default=None, help="JSONL input: texts or {\"text\": ...} objects")
    t.add_argument("--model", default=DEFAULT_MODEL)
    t.add_argument("--top-k", type=int, default=5)
    t.add_argument("--json", action="store_true", help="one JSON line per input")
    t.add_argument("--engine", default="auto", choices=["auto", "torch", "onnxruntime"],
                   help="auto: ONNX Runtime where the model directory ships model.onnx (fast start), else torch")
    _add_runtime_args(t)
    t.set_defaults(func=_fill_mask)

    from albert import cli_more

    cli_more.add_commands(sub, _add_runtime_args)
    return p


def _add_runtime_args(t: argparse.ArgumentParser) -> None:
    t.add_argument("--device", default="auto", help="auto, cpu or cuda")
    t.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32", "int8"],
                   help="auto: bf16 on CPUs with AMX/AVX512-BF16 and on GPUs, else fp32; int8: dynamic "
                        "quantization (CPU)")
    t.add_argument("--compile", action="store_true", help="torch.compile the model (slow first call)")


def _known_errors() -> tuple[type[BaseException], ...]:
    from albert.checkpoint import CheckpointError
    from albert.config import ConfigError
    from albert.data.reader import DataError
    from albert.export import ExportError
    from albert.tokenizer import TokenizerError
    from albert.train.loop import TrainingError
    from albert.train.settings import SettingsError

    return (ConfigError, TokenizerError, DataError, CheckpointError, SettingsError, TrainingError, ExportError,
            FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "takes_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    func: Callable[..., None] = args.func
    try:
        if getattr(args, "takes_extra", False):
            func(args, extra)
        else:
            func(args)
    except _known_errors() as e:
        print(f"albert: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("albert: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return 0


def read_inputs(args_inputs: list[str] | None, file: str | None, stdin_json: bool = False) -> Iterator[Any]:
    """Inputs from arguments, a JSONL file, or stdin lines (in that order of preference). Stdin lines are
    texts, or JSON objects for the commands whose inputs have fields (`stdin_json`: answer, choose)."""
    if args_inputs:
        yield from args_inputs
        return
    from albert.data.reader import DataError, open_text

    def parse(line: str, where: str) -> Any:
        try:
            return json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: invalid JSON ({e.msg})") from None

    if file:
        with open_text(file) as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    yield parse(line, f"{file}:{n}")
        return
    for n, line in enumerate(sys.stdin, 1):
        if line.strip():
            yield parse(line, f"<stdin>:{n} (one JSON object per line)") if stdin_json else line.rstrip("\n")


if __name__ == "__main__":
    sys.exit(main())
