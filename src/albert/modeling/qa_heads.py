"""The extractive question-answering heads: SQuAD 1.1's start and end logits (transformers' class), and SQuAD 2.0's
with answerability (the ALBERT paper's v2 head: the end conditioned on the start, and a classifier of whether the
passage answers at all)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from albert.modeling.config import AlbertConfig
from albert.modeling.outputs import AnswerabilityQAOutput, QuestionAnsweringModelOutput, cross_entropy
from albert.modeling.pretrained import AlbertModel, AlbertPreTrainedModel


class AlbertForQuestionAnswering(AlbertPreTrainedModel):
    def __init__(self, config: AlbertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.albert = AlbertModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        start_positions: Tensor | None = None,
        end_positions: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> QuestionAnsweringModelOutput:
        out = self.albert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                          output_hidden_states, output_attentions)
        logits = self.qa_outputs(out.last_hidden_state)  # (B, T, 2)
        start_logits, end_logits = (t.squeeze(-1).contiguous() for t in logits.split(1, dim=-1))
        loss = None
        if start_positions is not None and end_positions is not None:
            # Positions outside the window (clamped to T) are ignored, as in the original.
            T = start_logits.shape[1]
            start = start_positions.reshape(-1).clamp(0, T)
            end = end_positions.reshape(-1).clamp(0, T)
            loss = (cross_entropy(start_logits, start, ignore_index=T)
                    + cross_entropy(end_logits, end, ignore_index=T)) / 2
        return QuestionAnsweringModelOutput(loss, start_logits, end_logits, out.hidden_states, out.attentions)


class _StartHead(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, 1)

    def forward(self, seq: Tensor, p_mask: Tensor) -> Tensor:
        return _masked(self.dense(seq).squeeze(-1), p_mask)


class _EndHead(nn.Module):
    """End logits conditioned on a start: tanh(W [h_t ; h_start]) → LayerNorm → linear."""

    def __init__(self, hidden: int, eps: float) -> None:
        super().__init__()
        self.dense_0 = nn.Linear(2 * hidden, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)
        self.dense_1 = nn.Linear(hidden, 1)

    def forward(self, seq: Tensor, start_features: Tensor, p_mask: Tensor) -> Tensor:
        # seq (..., T, H), start_features (..., 1, H) broadcast over T
        x = torch.cat([seq, start_features.expand_as(seq)], dim=-1)
        x = self.dense_1(self.LayerNorm(torch.tanh(self.dense_0(x)))).squeeze(-1)
        return _masked(x, p_mask)


class _AnswerClassHead(nn.Module):
    """Is the window unanswerable? From [start-probability-weighted feature ; [CLS] feature]. No
    dependency on the end, so each window gets one logit."""

    def __init__(self, hidden: int, dropout: float) -> None:
        super().__init__()
        self.dense_0 = nn.Linear(2 * hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        self.dense_1 = nn.Linear(hidden, 1, bias=False)

    def forward(self, seq: Tensor, start_logits: Tensor) -> Tensor:
        start_feature = torch.einsum("bth,bt->bh", seq, start_logits.float().softmax(-1).to(seq.dtype))
        x = torch.tanh(self.dense_0(torch.cat([start_feature, seq[:, 0]], dim=-1)))
        return self.dense_1(self.dropout(x)).squeeze(-1)


def _masked(logits: Tensor, p_mask: Tensor) -> Tensor:
    """Positions with p_mask 1 (question, separators, padding) can never start or end an answer."""
    logits = logits.float()
    return logits * (1 - p_mask) - 1e30 * p_mask


class AlbertForQuestionAnsweringWithAnswerability(AlbertPreTrainedModel):
    """The original ALBERT's SQuAD 2.0 head (XLNet's; transformers has none): start logits masked by
    `p_mask`, end logits conditioned on the start (the gold start in training, a beam of `start_n_top` ×
    `end_n_top` at inference), and an answerability classifier trained with sigmoid cross-entropy.
    Loss = (start CE + end CE) / 2 + 0.5 · answerability BCE. An unanswerable window points start and
    end at [CLS] (position 0), which `p_mask` must leave open.

    Parameter names follow the TF variable scopes (`start_logits/dense` → `start_head.dense`, ...), so the
    original's variable names stay recognisable."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__(config)
        H = config.hidden_size
        self.albert = AlbertModel(config, add_pooling_layer=False)
        self.start_head = _StartHead(H)
        self.end_head = _EndHead(H, config.layer_norm_eps)
        self.answer_head = _AnswerClassHead(H, config.head_dropout)
        self.post_init()

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        p_mask: Tensor | None = None,
        start_positions: Tensor | None = None,
        end_positions: Tensor | None = None,
        is_impossible: Tensor | None = None,
        start_n_top: int = 5,
        end_n_top: int = 5,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> AnswerabilityQAOutput:
        out = self.albert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                          output_hidden_states, output_attentions)
        seq = out.last_hidden_state  # (B, T, H)
        B, T = seq.shape[:2]
        if p_mask is None:  # without the task's mask only padding is excluded
            p_mask = (1 - attention_mask) if attention_mask is not None else seq.new_zeros(B, T)
        p_mask = p_mask.float()
        start_logits = self.start_head(seq, p_mask)
        cls_logits = self.answer_head(seq, start_logits).float()
        if start_positions is not None and end_positions is not None:
            start = start_positions.reshape(-1)
            start_features = seq[torch.arange(B, device=seq.device), start].unsqueeze(1)  # (B, 1, H)
            end_logits = self.end_head(seq, start_features, p_mask)
            loss = (cross_entropy(start_logits, start) + cross_entropy(end_logits, end_positions.reshape(-1))) / 2
            if is_impossible is not None:
                loss = loss + 0.5 * F.binary_cross_entropy_with_logits(cls_logits, is_impossible.float().reshape(-1))
            return AnswerabilityQAOutput(loss, start_logits, end_logits, cls_logits, hidden_states=out.hidden_states,
                                         attentions=out.attentions)
        k_s, k_e = min(start_n_top, T), min(end_n_top, T)
        start_top_log_probs, start_top_index = start_logits.log_softmax(-1).topk(k_s, dim=-1)
        start_features = torch.gather(seq, 1, start_top_index.unsqueeze(-1).expand(-1, -1, seq.shape[-1]))
        # each of the k_s starts scores every position as an end: (B, k_s, T)
        end_logits = self.end_head(seq.unsqueeze(1).expand(-1, k_s, -1, -1), start_features.unsqueeze(2),
                                   p_mask.unsqueeze(1))
        end_top_log_probs, end_top_index = end_logits.log_softmax(-1).topk(k_e, dim=-1)
        return AnswerabilityQAOutput(None, start_logits, None, cls_logits, start_top_log_probs, start_top_index,
                                     end_top_log_probs, end_top_index, out.hidden_states, out.attentions)
