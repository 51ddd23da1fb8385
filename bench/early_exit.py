"""Early exit over the shared layer's passes: accuracy against speed, on three labelled tasks, beside full depth and
ONNX Runtime's fused int8.

    python bench/early_exit.py train    [--tasks ../shared/data/tasks] [--work runs/early-exit] [--variants ...]
    python bench/early_exit.py measure  [--work runs/early-exit] [--rows 1000] [--rounds 3]
    python bench/early_exit.py base     (the speed sweep on albert-base-v2's shape)
    python bench/early_exit.py plot

train: `albert finetune --early_exit true` on fine_foods_sentiment, bible_paraphrase and wordnet_supersense with
bench/finetune_tasks.py's settings, once per kind of exit classifier (shared, per_pass), and once without early
exit (the model as fine-tuned today). A run whose model exists is skipped (rerun to resume a killed set).

measure: on the first --rows dev rows of each task, in length-sorted batches of 32 and one row at a time: ours in
int8 with --compile at full depth (the fastest we run) and with early exit at several patience and entropy
settings, and ONNX Runtime's fused int8 (transformers' export through onnxruntime.transformers.optimizer, dynamic
int8) at full depth; every contender on the same rows, in alternating rounds, medians. Nothing else should run on
the machine meanwhile.

base: albert-base-v2's shape (random weights, 12 passes of 768): throughput at batch 32 and latency at batch 1 when
rows stop after k passes, for the pass counts the tasks' settings give, against full depth and ONNX Runtime.

Results: bench/results/early_exit.json; the plot: docs/early-exit.png.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from finetune_tasks import RUNS  # noqa: E402

TASKS = ("fine_foods_sentiment", "bible_paraphrase", "wordnet_supersense")
# sentence order (`--task sentence-order`): pairs cut from documents the embedded model never saw, those corpus/build.sh
# adds after the base corpus (Debian packages' manuals and commentaries); trained with --only sentence_order
ORDER_TASK = "sentence_order"
ORDER_RUN = dict(max_seq_length=128, batch_size=32, learning_rate=5e-5, max_steps=200)
ORDER_WORDS = {"dev": 110_000, "train": 4_000_000}  # words of whole documents in each split
VARIANTS = ("shared", "per_pass", "none")
# (patience, entropy threshold in nats); a model measures those that can stop a row early: patience below its passes
# - 1, a threshold below ln K (K labels: a distribution's largest entropy)
POLICIES: list[tuple[int, float]] = [(1, 0.0), (2, 0.0), (3, 0.0), (4, 0.0), (5, 0.0), (6, 0.0), (0, 0.05), (0, 0.1),
                                     (0, 0.2), (0, 0.3), (0, 0.4), (0, 0.5), (0, 0.6), (0, 1.0), (0, 1.5), (2, 0.2)]
RESULTS = ROOT / "bench" / "results" / "early_exit.json"


def _order_data(a: argparse.Namespace) -> Path:
    """Sentence order's train.txt and dev.txt (documents, a blank line between): --order_text's documents from
    --order_skip on, shuffled (seed 0), whole documents up to ORDER_WORDS words each, dev first."""
    import random

    from albert.io.files import iter_documents

    directory = Path(a.work) / f"{ORDER_TASK}-data"
    if (directory / "train.txt").is_file():
        return directory
    unseen = list(iter_documents(a.order_text))[a.order_skip:]
    random.Random(0).shuffle(unseen)
    directory.mkdir(parents=True, exist_ok=True)
    taken = 0
    for split, budget in ORDER_WORDS.items():
        chosen, words = [], 0
        while words < budget and taken < len(unseen):
            chosen.append(unseen[taken])
            words += len(" ".join(unseen[taken]).split())
            taken += 1
        (directory / f"{split}.txt").write_text("\n\n".join("\n".join(d) for d in chosen) + "\n", encoding="utf-8")
    return directory


def _files(a: argparse.Namespace, task: str) -> tuple[str, dict[str, Any], Path, Path]:
    """A task's fine-tuning kind, settings, training file and dev file."""
    if task == ORDER_TASK:
        data = _order_data(a)
        return "sentence-order", ORDER_RUN, data / "train.txt", data / "dev.txt"
    kind, settings = RUNS[task]
    return kind, settings, Path(a.tasks) / task / "train.jsonl.xz", Path(a.tasks) / task / "dev.jsonl"


def train(a: argparse.Namespace) -> None:
    for variant in a.variants:  # every task's shared run first: the kind kept is measured on all three
        for task in a.only or TASKS:
            kind, settings, train_file, dev_file = _files(a, task)
            settings = {**settings, "max_steps": round(settings["max_steps"] * a.scale)}
            out = Path(a.work) / f"{task}-{variant}"
            if (out / "config.json").is_file():
                continue
            exits = [] if variant == "none" else ["--early_exit", "true", "--exit_classifiers", variant]
            cmd = [sys.executable, "-m", "albert", "finetune", "--task", kind, "--model", a.model,
                   "--train", str(train_file), "--dev", str(dev_file),
                   "--out", str(out), "--progress", "false", "--save_every", "50", "--eval_every",
                   str(settings["max_steps"]), *exits, *[x for k, v in settings.items() for x in (f"--{k}", str(v))]]
            resume = ["--resume"] if (out.parent / f"{out.name}-run" / "checkpoints").is_dir() else []
            started = time.perf_counter()
            done = subprocess.run(cmd + resume, capture_output=True, text=True)
            if done.returncode != 0:
                print(task, variant, "failed:", done.stderr.strip().splitlines()[-1:], file=sys.stderr)
                continue
            print(task, variant, json.loads((out / "dev_results.json").read_text()),
                  f"{time.perf_counter() - started:.0f} s", flush=True)


def _rows(a: argparse.Namespace, task: str, model_dir: Path, n: int) -> tuple[Any, list[Any], list[dict[str, Any]]]:
    """The task's featurizer, its first n dev examples and their features."""
    from albert.modeling.heads import AlbertForSequenceClassification
    from albert.tokenization.tokenizer import AlbertTokenizer
    from albert.train.finetune import build_featurizer, labels_of, read_task_rows, task_spec_of

    _, spec = task_spec_of(model_dir)
    labels = labels_of(AlbertForSequenceClassification.from_pretrained(model_dir))
    features = build_featurizer(spec, AlbertTokenizer.from_pretrained(model_dir), labels, 32)
    rows, _ = read_task_rows(spec, _files(a, task)[3], labels, features.tokenizer)
    rows = rows[:n]
    return features, rows, features.featurize(rows)


def _batches(features: Any, feats: list[dict[str, Any]], size: int) -> list[tuple[list[int], dict[str, torch.Tensor]]]:
    order = sorted(range(len(feats)), key=lambda i: len(feats[i]["input_ids"]))
    return [(idx, features.collate([feats[i] for i in idx], False))
            for idx in (order[k:k + size] for k in range(0, len(order), size))]


def _policies(a: argparse.Namespace) -> list[tuple[int, float]]:
    """POLICIES, or those --patience and --thresholds name."""
    if a.patience is None and a.thresholds is None:
        return POLICIES
    return [(p, 0.0) for p in a.patience or []] + [(0, t) for t in a.thresholds or []]


def _ours(model: Any, policy: Any) -> Any:
    from albert.modeling.early_exit import ExitPolicy

    options = {"exit_policy": ExitPolicy(*policy)} if policy else {}

    def run(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        with torch.inference_mode():
            out = model(**batch, **options)
        return out.logits.float(), out.exit_passes
    return run


def _ort(session: Any) -> Any:
    def run(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, None]:
        feeds = {k: batch[k].numpy() for k in ("input_ids", "attention_mask", "token_type_ids")}
        return torch.from_numpy(session.run(None, feeds)[0]), None
    return run


def _score(run: Any, batches: list[tuple[list[int], dict[str, torch.Tensor]]], gold: list[int],
           full: int) -> dict[str, float]:
    """Accuracy and mean passes over all rows (`full` where the contender runs every pass), and the wall time of
    one sweep."""
    preds, passes = [0] * len(gold), [0] * len(gold)
    started = time.perf_counter()
    for idx, batch in batches:
        logits, p = run(batch)
        for k, i in enumerate(idx):
            preds[i] = int(logits[k].argmax())
            passes[i] = int(p[k]) if p is not None else full
    seconds = time.perf_counter() - started
    accuracy = sum(p == g for p, g in zip(preds, gold)) / len(gold)
    return {"accuracy": 100 * accuracy, "mean_passes": sum(passes) / len(passes), "seconds": seconds}


def _sop_head_accuracy(model: str, rows: list[Any]) -> float:
    """Accuracy of the model fine-tuned from (pretraining's SOP head, fp32, full depth) on the same pairs."""
    from albert.inference.pipelines import pipeline
    from albert.tasks.sequence import ORDER_LABELS

    answers = pipeline("sentence-order", model=model, precision="fp32")([{"first": r.text, "second": r.pair}
                                                                          for r in rows])
    return round(100 * sum(x["label"] == ORDER_LABELS[r.label] for x, r in zip(answers, rows)) / len(rows), 2)


def _fused_int8(model_dir: Path, directory: Path) -> Any:
    import transformers

    from inference_speed import fused_onnxruntime

    theirs = transformers.AlbertForSequenceClassification.from_pretrained(str(model_dir)).eval()
    theirs.config._attn_implementation = "sdpa"
    config = __import__("albert").AlbertConfig.from_json_file(model_dir / "config.json", strict=False)
    return fused_onnxruntime(theirs, directory, config)["onnxruntime_fused_int8"]


def measure(a: argparse.Namespace) -> None:
    import tempfile

    from albert.modeling.heads import AlbertForSequenceClassification
    from albert.runtime.kernels import cpu_description
    from albert.runtime.policy import prepare_for_inference, resolve_runtime

    torch.set_num_threads(a.threads)
    out = Path(a.results)
    results: dict[str, Any] = json.loads(out.read_text()) if out.is_file() else {}
    results["machine"] = cpu_description()
    results["threads"] = torch.get_num_threads()
    for task in a.only or TASKS:
        for variant in [v for v in a.variants if v != "none"]:
            model_dir = Path(a.work) / f"{task}-{variant}"
            if not model_dir.is_dir():
                continue
            features, rows, feats = _rows(a, task, model_dir, a.rows)
            gold = [int(r.label) for r in rows]
            ours = prepare_for_inference(AlbertForSequenceClassification.from_pretrained(model_dir),
                                         resolve_runtime("cpu", "int8"), compile=True)
            passes, labels = ours.config.num_hidden_layers, ours.config.num_labels
            contenders = {"ours_int8_compile_full": _ours(ours, None)}
            contenders.update({f"ours_exit_p{p}_t{t:g}": _ours(ours, (p, t)) for p, t in _policies(a)
                               if p < passes - 1 and t < math.log(labels)})
            with tempfile.TemporaryDirectory() as d:
                if variant == "shared" or a.ort_every:
                    contenders["onnxruntime_fused_int8_full"] = _ort(_fused_int8(model_dir, Path(d)))
                row: dict[str, Any] = {"rows": len(rows)}
                if task == ORDER_TASK:
                    row["pretrained_sop_head_accuracy"] = _sop_head_accuracy(a.model, rows)
                for size, label in ((32, "batch32"), (1, "batch1")):
                    batches = _batches(features, feats if size == 32 else feats[:a.latency_rows], size)
                    n = sum(len(i) for i, _ in batches)
                    for run in contenders.values():  # compile every shape, warm every cache
                        for _, b in batches[:2] + batches[-2:]:
                            run(b)
                    times: dict[str, list[float]] = {k: [] for k in contenders}
                    scored: dict[str, dict[str, float]] = {}
                    sub_gold = [gold[i] for i in range(n)] if size == 1 else gold
                    for _ in range(a.rounds):
                        for name, run in contenders.items():
                            s = _score(run, batches, sub_gold, passes)
                            times[name].append(s["seconds"])
                            scored[name] = s
                    row[label] = {name: {"accuracy": round(scored[name]["accuracy"], 2),
                                         "mean_passes": round(scored[name]["mean_passes"], 2),
                                         "rows_per_s": round(n / statistics.median(times[name]), 1),
                                         "ms_per_row": round(1000 * statistics.median(times[name]) / n, 2)}
                                  for name in contenders}
                    print(task, variant, label, json.dumps(row[label]), flush=True)
            results.setdefault("tasks", {}).setdefault(task, {})[variant] = row
            out.write_text(json.dumps(results, indent=2) + "\n")


def _stops_at(certain: bool, hidden: int) -> torch.nn.Linear:
    """A stand-in classifier for the shape sweep: certain (entropy ~0) from pass `k` on, unsure before it, so an
    entropy threshold stops every row after exactly k passes (a Linear: the loop reads its weight and bias)."""
    layer = torch.nn.Linear(hidden, 2)
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.copy_(torch.tensor([30.0 if certain else 0.0, 0.0]))
    return layer


def base(a: argparse.Namespace) -> None:
    """albert-base-v2's shape, random weights: ours int8 --compile at full depth and stopping every row after k
    passes, and ONNX Runtime's fused int8 at full depth; batch 32 × 128 tokens and 1 × 128, alternating rounds."""
    import tempfile

    import albert
    from albert.modeling.heads import AlbertForSequenceClassification
    from albert.runtime.kernels import cpu_description
    from albert.runtime.policy import prepare_for_inference, resolve_runtime

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    config = albert.AlbertConfig.from_preset("albert-base-v2", early_exit="shared", num_labels=2)
    out = Path(a.results)
    results: dict[str, Any] = json.loads(out.read_text()) if out.is_file() else {}
    row: dict[str, Any] = {"shape": "albert-base-v2 (12 passes of 768), random weights", "seq": 128}
    with tempfile.TemporaryDirectory() as d:
        AlbertForSequenceClassification(config).save_pretrained(d)
        ours = prepare_for_inference(AlbertForSequenceClassification.from_pretrained(d),
                                     resolve_runtime("cpu", "int8"), compile=True)
        ort = _ort(_fused_int8(Path(d), Path(d)))
        stops = [3, 6, 9, 12]
        contenders: dict[str, Any] = {"ours_int8_compile_full": _ours(ours, None),
                                      "onnxruntime_fused_int8_full": ort}

        def stopping_at(k: int) -> Any:
            run = _ours(ours, (0, 0.1))

            def call(batch: dict[str, torch.Tensor]) -> Any:
                ours.classifier_at = lambda i: _stops_at(i + 1 >= k, config.hidden_size)  # type: ignore[method-assign]
                try:
                    return run(batch)
                finally:
                    del ours.classifier_at
            return call
        contenders.update({f"ours_exit_after_{k}": stopping_at(k) for k in stops})
        for B, label in ((32, "batch32"), (1, "batch1")):
            g = torch.Generator().manual_seed(1)
            batches = [([0] * B, {"input_ids": torch.randint(5, 30000, (B, 128), generator=g),
                                  "attention_mask": torch.ones(B, 128, dtype=torch.long),
                                  "token_type_ids": torch.zeros(B, 128, dtype=torch.long)})
                       for _ in range(a.base_batches if B > 1 else a.base_batches * 8)]
            for run in contenders.values():
                run(batches[0][1])
            times: dict[str, list[float]] = {k: [] for k in contenders}
            passes: dict[str, float] = {}
            for _ in range(a.rounds):
                for name, run in contenders.items():
                    started = time.perf_counter()
                    for _, batch in batches:
                        _, p = run(batch)
                    times[name].append(time.perf_counter() - started)
                    passes[name] = float(p.float().mean()) if p is not None else 12.0
            n = B * len(batches)
            row[label] = {name: {"mean_passes": passes[name], "rows_per_s": round(n / statistics.median(t), 1),
                                 "ms_per_row": round(1000 * statistics.median(t) / n, 2)}
                          for name, t in times.items()}
            print("base", label, json.dumps(row[label]), flush=True)
    results["base_shape"] = row
    results["machine"] = cpu_description()
    out.write_text(json.dumps(results, indent=2) + "\n")


def plot(a: argparse.Namespace) -> None:
    """Accuracy against throughput at batch 32 for each task: early exit's settings, full depth, ONNX Runtime."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = json.loads(Path(a.results).read_text())
    tasks = results.get("tasks", {})
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    for ax, (task, variants) in zip(axes[0], tasks.items()):
        for variant, marker in (("shared", "o"), ("per_pass", "s")):
            rows = variants.get(variant, {}).get("batch32")
            if not rows:
                continue
            exits = {k: v for k, v in rows.items() if k.startswith("ours_exit")}
            ax.scatter([v["rows_per_s"] for v in exits.values()], [v["accuracy"] for v in exits.values()],
                       marker=marker, label=f"early exit ({variant})", alpha=0.8)
            full = rows["ours_int8_compile_full"]
            ax.scatter([full["rows_per_s"]], [full["accuracy"]], marker="*", s=150,
                       label=f"full depth, int8 --compile ({variant})")
            if "onnxruntime_fused_int8_full" in rows:
                o = rows["onnxruntime_fused_int8_full"]
                ax.scatter([o["rows_per_s"]], [o["accuracy"]], marker="x", s=80, color="black",
                           label="ONNX Runtime fused int8, full depth")
        ax.set_title(task)
        ax.set_xlabel("rows/s at batch 32 (2 cores)")
        ax.set_ylabel("dev accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    out = Path(a.plot)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("phase", choices=["train", "measure", "base", "plot"])
    ap.add_argument("--tasks", default=str(ROOT.parent / "shared" / "data" / "tasks"))
    ap.add_argument("--results", default=str(RESULTS), help="measure, base, plot: the JSON read and written")
    ap.add_argument("--plot", default=str(ROOT / "docs" / "early-exit.png"), help="plot: the image written")
    ap.add_argument("--work", default=str(ROOT / "runs" / "early-exit"))
    ap.add_argument("--model", default="albert-small-en")
    ap.add_argument("--scale", type=float, default=1.0, help="train: multiply every run's steps")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--only", nargs="*", default=None, help=f"these tasks only (also {ORDER_TASK})")
    ap.add_argument("--order_text", default=str(ROOT / "runs" / "corpus2" / "corpus.txt"),
                    help="sentence order: corpus/build.sh's corpus.txt, the documents cut into pairs")
    ap.add_argument("--order_skip", type=int, default=113_364,
                    help="sentence order: documents skipped first (the base corpus the embedded model was pretrained "
                         "on: 113,364 documents)")
    ap.add_argument("--rows", type=int, default=1000, help="dev rows per task")
    ap.add_argument("--latency_rows", type=int, default=200, help="of those, rows timed one at a time")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--patience", type=int, nargs="*", default=None, help="measure: these patience settings only")
    ap.add_argument("--thresholds", type=float, nargs="*", default=None, help="measure: these entropy thresholds only")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ort_every", action="store_true", help="ONNX Runtime for every variant, not only shared")
    ap.add_argument("--base_batches", type=int, default=4, help="base: batches of 32 per round (8× as many rows of 1)")
    a = ap.parse_args()
    {"train": train, "measure": measure, "base": base, "plot": plot}[a.phase](a)


if __name__ == "__main__":
    main()
