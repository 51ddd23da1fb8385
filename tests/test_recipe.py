"""The pretraining recipe's knobs: packed rows, the compiled step, SOP weight, one-cycle decay, the batch ramp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from albert.data.pretraining import PretrainingStream, collate, collate_packed, pack_rows
from albert.modeling.config import AlbertConfig
from albert.modeling.heads import AlbertForPreTraining
from albert.tokenization.tokenizer import AlbertTokenizer
from albert.train.optim import lr_lambda
from albert.train.pretrain import PretrainTask
from albert.train.settings import PretrainSettings


def _task(prepared_data: Path, **changes: object) -> tuple[PretrainTask, AlbertConfig]:
    tokenizer = AlbertTokenizer.from_pretrained(prepared_data / "tokenizer")
    config = AlbertConfig.from_preset("albert-tiny", vocab_size=tokenizer.vocab_size, hidden_dropout_prob=0.0,
                                      attention_probs_dropout_prob=0.0, classifier_dropout_prob=0.0)
    fields: dict = {"batch_size": 8, "max_seq_length": 64, "short_seq_prob": 0.5, **changes}
    settings = PretrainSettings(data=str(prepared_data), **fields)
    return PretrainTask(settings, tokenizer, config), config


def _examples(task: PretrainTask, n: int) -> list:
    stream = PretrainingStream(task.stream.corpus, task.masker, task.examples, seed=3)
    out = []
    for _, example in stream.examples(0):
        out.append(example)
        if len(out) == n:
            return out
    raise AssertionError("fixture too small")


def test_pack_rows_fills_rows_best_fit_and_keeps_every_example() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 129, size=500).tolist()
    rows = pack_rows(lengths, 128)
    assert sorted(i for row in rows for i in row) == list(range(500))
    assert all(sum(lengths[i] for i in row) <= 128 for row in rows)
    assert len(rows) <= 1.1 * sum(lengths) / 128 + 1  # within 10% of the bound
    with pytest.raises(ValueError, match="does not fit"):
        pack_rows([129], 128)


def test_packed_rows_give_each_example_its_padded_outputs(prepared_data: Path) -> None:
    """The loss of a packed batch (block-diagonal attention, positions restarting) equals the padded batch's, and
    so do the gradients: packing changes the layout, not the computation."""
    task, config = _task(prepared_data)
    examples = _examples(task, 24)
    rows = pack_rows([len(e.input_ids) for e in examples], 128)  # the tiny model has 128 positions
    assert len(rows) < len(examples)  # several examples share a row
    padded = collate(examples, task.pad_id, task.examples.max_predictions_per_seq)
    packed = collate_packed([[examples[i] for i in row] for row in rows], task.pad_id)
    norm_p, norm_k = task.normalizers([padded]), task.normalizers([packed])
    assert torch.equal(norm_p, norm_k)
    torch.manual_seed(0)
    model = AlbertForPreTraining(config).train()
    results = []
    for batch in (padded, packed):
        model.zero_grad()
        loss, stats = task.loss(model, batch, norm_p)
        loss.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results.append((loss.detach(), stats, grads))
    (a, sa, ga), (b, sb, gb) = results
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-6)
    names = task.stat_names
    for k in ("mlm_loss_sum", "mlm_count", "sop_count", "sop_correct", "tokens"):
        assert sa[names.index(k)].item() == pytest.approx(sb[names.index(k)].item(), rel=1e-5)
    assert sb[names.index("positions")] < sa[names.index("positions")]  # less padding computed


def test_compiled_packed_step_gives_the_eager_padded_loss(prepared_data: Path) -> None:
    """What the GPU recipe runs (packed rows under torch.compile) trains on the same loss as the eager padded step."""
    task, config = _task(prepared_data)
    examples = _examples(task, 16)
    rows = pack_rows([len(e.input_ids) for e in examples], 128)  # the tiny model has 128 positions
    padded = collate(examples, task.pad_id, task.examples.max_predictions_per_seq)
    packed = collate_packed([[examples[i] for i in row] for row in rows], task.pad_id)
    norm = task.normalizers([padded])
    torch.manual_seed(0)
    model = AlbertForPreTraining(config).train()
    eager, _ = task.loss(model, padded, norm)
    compiled, _ = task.loss(torch.compile(model), packed, norm)
    torch.testing.assert_close(eager, compiled, rtol=1e-5, atol=1e-5)


def test_sop_weight_scales_the_sentence_order_loss(prepared_data: Path) -> None:
    losses = {}
    for weight in (1.0, 0.0):
        task, config = _task(prepared_data, sop_weight=weight)
        batch = collate(_examples(task, 8), task.pad_id, task.examples.max_predictions_per_seq)
        torch.manual_seed(0)
        model = AlbertForPreTraining(config)
        loss, stats = task.loss(model, batch, task.normalizers([batch]))
        summary = task.summarize(dict(zip(task.stat_names, stats.tolist())))
        losses[weight] = (loss.item(), summary)
    assert losses[0.0][0] == pytest.approx(losses[0.0][1]["mlm_loss"], rel=1e-5)
    assert losses[1.0][0] == pytest.approx(losses[1.0][1]["mlm_loss"] + losses[1.0][1]["sop_loss"], rel=1e-5)
    assert losses[0.0][1]["sop_acc"] == losses[1.0][1]["sop_acc"]  # still scored


def test_one_cycle_rises_to_the_peak_then_falls_to_zero() -> None:
    f = lr_lambda(30, 100, "one_cycle")
    values = [f(s) for s in range(100)]
    assert values[29] == 1.0 and values[30] == 1.0
    assert values[0] == pytest.approx(1 / 30)
    assert all(a >= b for a, b in zip(values[30:], values[31:]))
    assert values[99] == pytest.approx(1 / 70)
    assert f(100) == 0.0


def test_batch_ramp_grows_steps_by_micro_batches_and_uses_every_row_once(prepared_data: Path) -> None:
    task, _ = _task(prepared_data, batch_size=8, batch_ramp_steps=4, batch_ramp_from=0.25)
    sizes = [len(task.step_batches(step, 0, 1, 2)) for step in range(8)]
    assert sizes == [1, 2, 3, 4, 4, 4, 4, 4]  # micro-batches of 2 sequences: 2, 4, 6, then all 8
    plain, _ = _task(prepared_data, batch_size=8)
    rows = [b["input_ids"] for step in range(4) for b in plain.step_batches(step, 0, 1, 2)]
    ramped, _ = _task(prepared_data, batch_size=8, batch_ramp_steps=4)
    taken = [b["input_ids"] for step in range(7) for b in ramped.step_batches(step, 0, 1, 2)]
    assert len(taken) >= len(rows)
    assert all(torch.equal(x, y) for x, y in zip(rows, taken))  # the same pool, taken in the same order


def test_heldout_scores_use_the_same_masking_whatever_the_recipe(prepared_data: Path) -> None:
    a, _ = _task(prepared_data)
    b, _ = _task(prepared_data, masked_lm_prob=0.4, max_predictions_per_seq=26, max_ngram=1, packing=True)
    batches_a, batches_b = a.eval_batches(), b.eval_batches()
    assert len(batches_a) == len(batches_b)
    assert all(torch.equal(x[k], y[k]) for x, y in zip(batches_a, batches_b) for k in x)
    masked = sum(int((x["labels"] != -100).sum()) for x in batches_a)
    tokens = sum(int(x["attention_mask"].sum()) for x in batches_a)
    assert 0.12 < masked / tokens < 0.16


def test_settings_refuse_a_ramp_from_nothing() -> None:
    from albert.errors import ConfigError

    with pytest.raises(ConfigError, match="batch_ramp_from"):
        PretrainSettings(data="x", batch_ramp_from=0.0)


def test_time_budget_ends_the_run_evaluated_and_saved_with_the_schedule_run_through(prepared_data: Path,
                                                                                       tmp_path: Path) -> None:
    import json

    from albert.train.pretrain import pretrain

    settings = PretrainSettings(data=str(prepared_data), run_dir=str(tmp_path / "run"), model="albert-tiny",
                                max_seq_length=64, batch_size=8, max_steps=100_000, learning_rate=1e-3,
                                warmup_fraction=0.0, time_budget_minutes=0.05, eval_every=100_000,
                                save_every=100_000, precision="fp32", progress=False, num_threads=1, packing=True)
    final = pretrain(settings)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r.get("kind") != "eval"]
    # The clock starts after the first step (compilation), and the step that finds the budget spent is the last:
    # two steps at least on any machine, however slow, and far fewer than max_steps
    assert 2 <= len(steps) < 100_000 and records[-1]["kind"] == "eval"  # stopped by time, then evaluated
    # the step that found the budget spent ran at the schedule's end (the linear decay follows the time used)
    assert steps[-1]["lr"] < 0.2 * steps[0]["lr"]
    assert (final / "model.safetensors").is_file()
    assert list((tmp_path / "run" / "checkpoints").iterdir())  # and saved


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "recipes").rglob("pretrain*.yaml")),
                         ids=lambda p: p.name)
def test_every_recipe_file_is_valid_settings(path: Path) -> None:
    import yaml

    from albert.modeling.config import AlbertConfig
    from albert.train.settings import build_settings

    raw = yaml.safe_load(path.read_text())
    settings = build_settings(PretrainSettings, {**raw, "data": "x"})
    config = AlbertConfig.from_preset(settings.model, **settings.model_overrides)
    assert config.hidden_size % config.num_attention_heads == 0
    assert settings.batch_size % (settings.micro_batch_size or settings.batch_size) == 0


@pytest.mark.parametrize("script", sorted(Path(__file__).resolve().parents[1].glob("recipes/*/reproduce.sh")),
                         ids=lambda p: p.parent.name)
def test_every_recipe_says_its_cost_and_refuses_a_corpus_it_was_not_built_from(script: Path, tmp_path: Path) -> None:
    """`reproduce.sh --help` states what the run costs and where it writes; a corpus whose SHA-256 differs from the
    pinned one is refused before anything is set up, downloaded or written."""
    import subprocess

    shown = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and ("CPU hours" in shown.stdout or "device time" in shown.stdout)
    assert "writes only under" in shown.stdout
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("not the corpus\n")
    env = {"PATH": "/usr/bin:/bin", "CORPUS": str(corpus), "CORPUS_SHA256": "0" * 64, "ALBERT": "false",
           "HOME": str(tmp_path)}
    refused = subprocess.run(["bash", str(script), str(tmp_path / "work")], capture_output=True, text=True,
                             timeout=60, env=env, cwd=tmp_path)
    assert refused.returncode == 2 and "not the pinned" in refused.stderr, refused.stderr
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())
