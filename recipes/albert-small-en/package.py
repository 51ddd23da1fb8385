"""Package a finished pretraining run as the embedded model: weights, tokenizer, curves, model card.

    python recipes/albert-small-en/package.py RUN_DIR OUT_DIR [--checkpoint DIR]

The held-out MLM and SOP accuracies are measured here on every sequence of the run's held-out
documents (the eval split of the prepared data), not copied from the training log.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path

import torch
import yaml

from albert.export import export_onnx
from albert.heads import AlbertForMaskedLM, AlbertForPreTraining
from albert.tokenizer import AlbertTokenizer
from albert.train.plot import plot_run, read_history, run_stages
from albert.train.pretrain import PretrainTask, build_config
from albert.train.settings import PretrainSettings, build_settings


def measure(settings: PretrainSettings, model: AlbertForPreTraining, tokenizer: AlbertTokenizer) -> dict:
    settings.eval_examples = 10**9  # all held-out sequences
    task = PretrainTask(settings, tokenizer)
    return task.evaluate(model, torch.device("cpu"), torch.bfloat16 if settings.precision == "bf16" else None)


def stage_settings(run: Path) -> PretrainSettings:
    return build_settings(PretrainSettings, yaml.safe_load((run / "settings.yaml").read_text()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", help="the run to package (its init_from chain gives the earlier stages)")
    ap.add_argument("out_dir")
    ap.add_argument("--checkpoint", default=None, help="package this checkpoint instead of RUN_DIR/final")
    a = ap.parse_args()
    run, out = Path(a.run_dir), Path(a.out_dir)
    stages = run_stages(run)
    settings = stage_settings(run)
    earlier = [(stage_settings(path), upto or 0) for path, upto in stages[:-1]]
    tokenizer = AlbertTokenizer.from_pretrained(Path(settings.data) / "tokenizer")
    if a.checkpoint:
        from safetensors.torch import load_file

        model = AlbertForPreTraining(build_config(settings, tokenizer.vocab_size))
        model.load_state_dict(load_file(str(Path(a.checkpoint) / "model.safetensors")), strict=False)
        model.tie_weights()
        step = int(Path(a.checkpoint).name.removeprefix("step_"))
    else:
        model = AlbertForPreTraining.from_pretrained(run / "final")
        step = min(settings.max_steps, settings.stop_after or settings.max_steps)
    model.eval()
    heldout = measure(settings, model, tokenizer)
    before = sum(upto for _, upto in earlier)
    total, planned = before + step, before + settings.max_steps

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    # the fill-mask graph for ONNX Runtime, reading its weights from model.safetensors (albert fill-mask's fast start)
    export_onnx(AlbertForMaskedLM.from_pretrained(out), out / "model.onnx", share_weights=out / "model.safetensors")
    plot_run(run, out / "curves.png", max_step=total)
    # each stage's resolved settings, with the recipe's relative paths instead of this machine's
    import dataclasses

    from albert.train.settings import save_settings

    for i, (path, _) in enumerate(stages):
        st = stage_settings(path)
        relative = {f.name: str(getattr(st, f.name)).replace(str(Path.cwd()) + "/", "")
                    for f in dataclasses.fields(st) if f.name in ("run_dir", "data", "init_from")}
        name = "pretrain.yaml" if i == 0 else f"pretrain-stage{i + 1}.yaml"
        save_settings(dataclasses.replace(st, **relative), out / name)

    train, evals, starts = read_history(run, total)
    tokens = int(sum(r.get("tokens", 0) for r in train))
    seconds = sum(r.get("seconds", 0.0) for r in train)
    last = train[-50:]
    meta = json.loads((Path(settings.data) / "meta.json").read_text())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    facts = {
        "name": out.name, "steps": total, "planned_steps": planned, "stage_starts": starts,
        "sequences_seen": total * settings.batch_size,
        "tokens_seen": tokens, "train_seconds": round(seconds), "train_hours": round(seconds / 3600, 2),
        "heldout": {k: round(v, 4) for k, v in heldout.items()},
        "final_train": {k: round(sum(r[k] for r in last) / len(last), 4) for k in ("mlm_acc", "sop_acc", "loss")},
        "parameters": model.num_parameters(), "corpus_tokens": meta["tokens"], "corpus_documents": meta["documents"],
        "code_commit": commit,
    }
    (out / "training_facts.json").write_text(json.dumps(facts, indent=2) + "\n")
    cfg = model.config
    h = facts["heldout"]
    interim = "" if total >= planned else (
        f"\n**Interim checkpoint: step {total:,} of the {planned:,} planned.** The run continues from the "
        "checkpoint committed in `recipes/albert-small-en/run/` (see `recipes/albert-small-en/README.md`); this "
        "directory is replaced when it ends. Its predictions are still weak. This interim model itself is rebuilt by "
        f"`STAGE2_STOP_AFTER={step} bash recipes/albert-small-en/reproduce.sh`.\n")
    stage_rows = "\n".join(
        f"| {i + 1} | {n:,} | LAMB, peak lr {st.learning_rate}, warmup {st.warmup_steps}, {st.decay} decay over "
        f"{st.max_steps:,} steps | {st.document_order} | {st.seed} |"
        for i, (st, n) in enumerate([*earlier, (settings, step)]))
    weak = "" if h.get("eval_mlm_acc", 0.0) >= 0.35 else (
        "\n\n**Below the project's targets** (held-out MLM accuracy ≥ 35%, SOP ≥ 75%). At this accuracy the "
        "model has learned which words are frequent and some local syntax, but few associations between content "
        "words: its top fill-mask answers are mostly function words and punctuation (\"of\", \"the\", \",\"), "
        "and SOP is barely above what sentence-final punctuation gives away. The training loss was still falling "
        "slowly when the run stopped; a larger token budget (more steps, or fewer shared-layer passes per token) "
        "is what it lacks.")
    card = f"""# {out.name}

A small English ALBERT, pretrained from scratch on 2-core CPUs for this project's default model.
It is the model `albert fill-mask` uses when no `--model` is given.
{interim}
| | |
|---|---|
| architecture | ALBERT, E {cfg.embedding_size} → H {cfg.hidden_size}, {cfg.num_hidden_layers} passes of one shared layer, {cfg.num_attention_heads} heads, FFN {cfg.intermediate_size}, {cfg.hidden_act} |
| parameters | {facts['parameters']:,} |
| vocabulary | {cfg.vocab_size:,} SentencePiece unigram pieces, lowercased, accents stripped (ALBERT's settings) |
| sequence length | {settings.max_seq_length} |
| steps | {total:,} in {len(stages)} stage(s), batch {settings.batch_size} sequences |
| tokens seen | {tokens:,} (the corpus has {meta['tokens']['train']:,} training tokens) |
| wall time | {facts['train_hours']} h of training steps |
| **held-out MLM accuracy** | **{h.get('eval_mlm_acc', float('nan')):.1%}** (loss {h.get('eval_mlm_loss', float('nan')):.3f}) |
| **held-out SOP accuracy** | **{h.get('eval_sop_acc', float('nan')):.1%}** |
| held-out sequences measured | {int(h.get('eval_examples', 0)):,} (every sequence of {meta['documents']['eval']:,} held-out documents) |

Held-out = the 1% of whole documents that `albert data prepare --eval-fraction 0.01` set aside
(seed 0); the model never trained on them. Accuracies are over masked positions (MLM: 15% of
tokens, 1–3-gram whole-word spans, 80/10/10) and over sequences (SOP: 50% swapped).

![curves](curves.png)

## Stages
| stage | steps | schedule | document order | seed |
|---|---|---|---|---|
{stage_rows}

Stage 1 read its data one shard at a time, and the shards hold the corpus's documents in order, so
each source (dictionary, bibles, manuals, novels) filled a few hundred consecutive steps; on reaching a
new shard at step 929 the loss jumped from 5.6 to 7.9. Stage 2 continued from stage 1's step-900
weights (fresh LAMB state) on a stream that shuffles documents across the whole corpus — now the
default (`document_order: shuffled`). Stage 1 ran on an Intel CPU with AMX, stage 2 on an AMD EPYC
(Zen 4, AVX512-BF16).

## Corpus and licenses
`../shared/data/corpus.txt.xz` of the project: 84 MB of English — Moby-Dick, State of the Union
addresses 1790–2021, Jane Austen's novels, the King James and World English Bibles, Matthew Henry's
commentary, the GCIDE dictionary (WordNet-derived entries removed), the Devil's Dictionary, the
Jargon File, fortunes, and the Python, Perl, PostgreSQL, Linux kernel, Debian Reference and GNU
coding-standards documentation. Licenses: public domain, MIT, BSD-style, PSF, GPL, GFDL. The
corpus is ~78% dictionary entries and technical documentation by document count, so the model
knows definitions, scripture and manuals better than news or conversation.

## Recipe
Exactly the `pretrain*.yaml` files in this directory (also in `recipes/albert-small-en/`), run with
the code of commit `{commit}`; `bash recipes/albert-small-en/reproduce.sh` rebuilds the vocabulary,
the shards, both stages and this directory. Weight decay {settings.weight_decay}, clipping
{settings.max_grad_norm}, bf16 autocast, dynamic masking, length-sorted batch pools.

## Limits
Trained for about {facts['train_hours']:.0f} hours on two CPU cores: {tokens / 1e6:.1f} M tokens, against the
paper's 125k steps × 4096 sequences × 512 tokens (262 B). Lowercased input; max {settings.max_seq_length}
tokens per sequence.{weak}
"""
    (out / "README.md").write_text(card)
    print(json.dumps(facts, indent=2))


if __name__ == "__main__":
    main()
