"""The original ALBERT's SQuAD 2.0 head (AlbertForQuestionAnsweringWithAnswerability): its loss worked out
from the backbone's hidden states, the inference beam agreeing with the training path, p_mask, and the
head through fine-tuning, evaluation, prediction and the question-answering pipeline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from albert import AlbertConfig, AlbertForQuestionAnsweringWithAnswerability, pipeline
from albert.errors import ConfigError
from albert.train.finetune import evaluate_dir, finetune, predict_dir
from albert.train.finetune_settings import FinetuneSettings

FIX = Path(__file__).parent / "fixtures"


def small_model() -> AlbertForQuestionAnsweringWithAnswerability:
    torch.manual_seed(0)
    config = AlbertConfig(vocab_size=50, embedding_size=8, hidden_size=16, num_attention_heads=2,
                          intermediate_size=32, num_hidden_layers=2, max_position_embeddings=32)
    return AlbertForQuestionAnsweringWithAnswerability(config).eval()


def test_loss_by_hand() -> None:
    model = small_model()
    ids = torch.randint(5, 50, (3, 10))
    p_mask = torch.zeros(3, 10)
    p_mask[:, 1:4] = 1  # the "question"
    start, end, impossible = torch.tensor([5, 0, 7]), torch.tensor([6, 0, 9]), torch.tensor([0.0, 1.0, 0.0])
    out = model(ids, p_mask=p_mask, start_positions=start, end_positions=end, is_impossible=impossible)
    with torch.no_grad():
        seq = model.albert(ids).last_hidden_state
        W = model.start_head.dense
        s_logits = (seq @ W.weight.T + W.bias).squeeze(-1) - 1e30 * p_mask
        loss = F.cross_entropy(s_logits, start)
        e0, ln, e1 = model.end_head.dense_0, model.end_head.LayerNorm, model.end_head.dense_1
        e_loss = 0.0
        for b in range(3):  # end logits given the gold start, one example at a time
            x = torch.cat([seq[b], seq[b, start[b]].expand(10, -1)], -1)
            e = e1(ln(torch.tanh(e0(x)))).squeeze(-1) - 1e30 * p_mask[b]
            e_loss += F.cross_entropy(e[None], end[b:b + 1]) / 3
        feature = (s_logits.softmax(-1)[..., None] * seq).sum(1)  # start-probability-weighted
        a0, a1 = model.answer_head.dense_0, model.answer_head.dense_1
        cls = a1(torch.tanh(a0(torch.cat([feature, seq[:, 0]], -1)))).squeeze(-1)
        expected = (loss + e_loss) / 2 + 0.5 * F.binary_cross_entropy_with_logits(cls, impossible)
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(out.cls_logits, cls, atol=1e-5)


def test_beam_agrees_with_training_path_and_respects_p_mask() -> None:
    model = small_model()
    ids = torch.randint(5, 50, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, 9:] = 0  # padding
    p_mask = 1 - mask.float()
    p_mask[:, 1:5] = 1
    out = model(ids, attention_mask=mask, p_mask=p_mask, start_n_top=3, end_n_top=4)
    assert out.start_top_index.shape == (2, 3) and out.end_top_index.shape == (2, 3, 4)
    closed = {(b, i) for b in range(2) for i in range(12) if p_mask[b, i]}
    assert not any((b, int(i)) in closed for b in range(2) for i in out.start_top_index[b])
    assert not any((b, int(i)) in closed for b in range(2) for i in out.end_top_index[b].flatten())
    for k in range(3):  # the end log-probabilities for beam start k = the training path's, given that start
        start = out.start_top_index[:, k]
        trained = model(ids, attention_mask=mask, p_mask=p_mask, start_positions=start, end_positions=start)
        lp = trained.end_logits.log_softmax(-1).gather(1, out.end_top_index[:, k])
        assert torch.allclose(lp, out.end_top_log_probs[:, k], atol=1e-5)
    # without p_mask, padding is still excluded
    free = model(ids, attention_mask=mask)
    assert int(free.start_top_index[1].max()) < 9


def test_save_load_and_transformers_backbone(tmp_path: Path) -> None:
    import transformers
    model = small_model()
    model.save_pretrained(tmp_path)
    again = AlbertForQuestionAnsweringWithAnswerability.from_pretrained(tmp_path).eval()
    ids = torch.randint(5, 50, (2, 8))
    a, b = model(ids), again(ids)
    assert torch.equal(a.cls_logits, b.cls_logits) and torch.equal(a.end_top_index, b.end_top_index)
    theirs = transformers.AlbertModel.from_pretrained(tmp_path).eval()  # the head is ours alone
    with torch.no_grad():
        assert torch.allclose(theirs(ids).last_hidden_state, model.albert(ids).last_hidden_state, atol=1e-5)


def test_finetune_evaluate_predict_and_pipeline(tiny_model: Path, tmp_path: Path) -> None:
    rows = [json.loads(x) for x in (FIX / "wordnet_qa.jsonl").read_text().splitlines()]
    # half the questions asked of another row's context: unanswerable there
    v2 = [dict(r, context=rows[(i + 7) % len(rows)]["context"], answers={"text": [], "answer_start": []})
          if i % 2 else r for i, r in enumerate(rows)]
    v2 = [r for r in v2 if not r["answers"]["text"] or r["answers"]["text"][0] in r["context"]]
    train, dev = tmp_path / "train.jsonl", tmp_path / "dev.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in v2[:150]))
    dev.write_text("".join(json.dumps(r) + "\n" for r in v2[150:]))
    out = finetune(FinetuneSettings(task="qa-v2", answerability_head=True, train=str(train), dev=str(dev),
                                    model=str(tiny_model), out=str(tmp_path / "qa"), max_seq_length=64, doc_stride=16,
                                    batch_size=16, max_steps=20, learning_rate=1e-3, precision="fp32",
                                    progress=False, num_threads=1, seed=0))
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["AlbertForQuestionAnsweringWithAnswerability"]
    assert config["albert_task"]["answerability_head"] is True
    metrics = out.with_name(out.name + "-run") / "metrics.jsonl"  # the run directory beside the model
    losses = [json.loads(x)["loss"] for x in metrics.read_text().splitlines() if '"loss"' in x]
    assert losses[-1] < losses[0]
    scores = json.loads((out / "dev_results.json").read_text())
    assert {"exact", "f1", "best_exact", "best_f1", "best_f1_thresh"} <= set(scores)
    assert scores == pytest.approx(evaluate_dir(out, dev, precision="fp32"), abs=1e-6)
    preds = predict_dir(out, dev, precision="fp32")
    assert len(preds) == len(v2) - 150
    for p, r in zip(preds, v2[150:]):
        assert p["answer"] == "" or p["answer"] in r["context"]
    qa = pipeline("question-answering", model=out, precision="fp32")
    assert isinstance(qa.model, AlbertForQuestionAnsweringWithAnswerability)
    r = v2[150]
    got = qa(question=r["question"], context=r["context"])
    assert r["context"][got["start"]:got["end"]] == got["answer"] and "no_answer_score" in got
    # the CLI: --allow-no-answer answers "" exactly where the no-answer score is positive
    items = tmp_path / "questions.jsonl"
    items.write_text("".join(json.dumps(x) + "\n" for x in v2[150:160]))
    done = subprocess.run([sys.executable, "-m", "albert.cli", "answer", "--model", str(out), "--precision", "fp32",
                           "--allow-no-answer", "--file", str(items)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(answers) == 10
    for got, x in zip(answers, v2[150:160]):
        if got["no_answer_score"] > 0:
            assert got["answer"] == "", got
        else:  # a span of the context, not the empty answer
            assert got["answer"] and got["answer"] in x["context"], got


def test_head_only_for_qa(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="answerability_head is a question-answering head"):
        FinetuneSettings(task="classification", answerability_head=True, train="x", out=str(tmp_path))


def test_onnx_export_keeps_the_beam(tmp_path: Path) -> None:
    import onnxruntime as ort

    from albert.convert.export import export_onnx

    model = small_model()
    export_onnx(model, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    for shape in ((2, 20), (3, 31)):  # dynamic batch and sequence axes
        ids = torch.randint(5, 50, shape)
        feed = {"input_ids": ids.numpy(), "attention_mask": torch.ones_like(ids).numpy(),
                "token_type_ids": torch.zeros_like(ids).numpy()}
        start_lp, start_ix, end_lp, end_ix, cls = session.run(None, feed)
        with torch.no_grad():
            ref = model(ids)
        assert (start_ix == ref.start_top_index.numpy()).all() and (end_ix == ref.end_top_index.numpy()).all()
        assert abs(end_lp - ref.end_top_log_probs.numpy()).max() < 1e-4
        assert abs(cls - ref.cls_logits.numpy()).max() < 1e-4
