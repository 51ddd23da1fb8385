"""The public model classes: `AlbertModel` and every head, with transformers' names and outputs.

Losses are computed in fp32 whatever the compute dtype. Nothing here reads or writes files:
`from_pretrained` / `save_pretrained` delegate to `albert.modeling.pretrained`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from albert.modeling.backbone import (
    BaseModelOutputWithPooling,
    LayerWeights,
    activation_fn,
    attention_bias,
    compute_dtype,
)
from albert.modeling.config import AlbertConfig
from albert.modeling.early_exit import ExitPolicy, pabee_loss, require_exits, run_with_exit
from albert.modeling.outputs import (
    AlbertForPreTrainingOutput,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
    cross_entropy,
)
from albert.modeling.pretrained import AlbertModel, AlbertPreTrainedModel
from albert.modeling.qa_heads import AlbertForQuestionAnswering, AlbertForQuestionAnsweringWithAnswerability


# ----- head modules -----
class AlbertMLMHead(nn.Module):
    """H → E → activation → LayerNorm → E → V, the decoder tied to the word embeddings with one bias."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__()
        self.LayerNorm = nn.LayerNorm(config.embedding_size, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.dense = nn.Linear(config.hidden_size, config.embedding_size)
        self.decoder = nn.Linear(config.embedding_size, config.vocab_size)
        self.decoder.bias = self.bias
        self.activation = activation_fn(config.hidden_act)

    def forward(self, hidden: Tensor) -> Tensor:
        h = self.LayerNorm(self.activation(self.dense(hidden)))
        return self.decoder(h)


class AlbertSOPHead(nn.Module):
    def __init__(self, config: AlbertConfig) -> None:
        super().__init__()
        self.dropout = nn.Dropout(config.head_dropout)
        # transformers sizes it by num_labels (2 for sentence order); kept so checkpoints load either way
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, pooled: Tensor) -> Tensor:
        return self.classifier(self.dropout(pooled))


class _MaskedLMMixin(AlbertPreTrainedModel):
    albert: AlbertModel
    predictions: AlbertMLMHead
    tied_keys = ("predictions.decoder.weight", "predictions.decoder.bias")

    def tie_weights(self) -> None:
        self.predictions.decoder.weight = self.albert.embeddings.word_embeddings.weight
        self.predictions.decoder.bias = self.predictions.bias

    def get_output_embeddings(self) -> nn.Linear:
        return self.predictions.decoder

    def _encode_for_mlm(self, input_ids: Tensor | None, attention_mask: Tensor | None, token_type_ids: Tensor | None,
                        position_ids: Tensor | None, inputs_embeds: Tensor | None, mlm_positions: Tensor | None,
                        output_hidden_states: bool, output_attentions: bool, example_ids: Tensor | None = None,
                        pool_positions: Tensor | None = None) -> tuple[BaseModelOutputWithPooling, Tensor]:
        """The backbone's output and the hidden states the MLM head reads: [B, P, H] at `mlm_positions` [B, P],
        else [B, T, H]. With positions, the last layer computes only those positions (and [CLS] where there is a
        pooler), unless every layer's states or attentions are asked for."""
        only = mlm_positions if not (output_hidden_states or output_attentions) else None
        out = self.albert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                          output_hidden_states, output_attentions, output_positions=only, example_ids=example_ids,
                          pool_positions=pool_positions)
        hidden = out.last_hidden_state
        if mlm_positions is not None and only is None:
            hidden = torch.gather(hidden, 1, mlm_positions[..., None].expand(-1, -1, hidden.shape[-1]))
        return out, hidden


class AlbertForPreTraining(_MaskedLMMixin):
    def __init__(self, config: AlbertConfig) -> None:
        super().__init__(config)
        self.albert = AlbertModel(config)
        self.predictions = AlbertMLMHead(config)
        self.sop_classifier = AlbertSOPHead(config)
        self.post_init()

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        labels: Tensor | None = None,
        sentence_order_label: Tensor | None = None,
        mlm_positions: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        example_ids: Tensor | None = None,
        sop_positions: Tensor | None = None,
    ) -> AlbertForPreTrainingOutput:
        """`mlm_positions` [B, P] runs the MLM head on those positions only (as the original does in
        training); `prediction_logits` is then [B, P, V] and `labels` [B, P] (-100 for padding).
        Packed rows (see albert.data.pretraining.collate_packed): `example_ids` [B, T] and the examples' [CLS]
        positions `sop_positions` [B, S]; `sop_logits` is then [B, S, 2] and `sentence_order_label` [B, S]."""
        out, hidden = self._encode_for_mlm(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                                           mlm_positions, output_hidden_states, output_attentions, example_ids,
                                           sop_positions)
        logits = self.predictions(hidden)
        assert out.pooler_output is not None
        sop_logits = self.sop_classifier(out.pooler_output)
        loss = None
        if labels is not None and sentence_order_label is not None:
            loss = cross_entropy(logits, labels) + cross_entropy(sop_logits, sentence_order_label)
        return AlbertForPreTrainingOutput(loss, logits, sop_logits, out.hidden_states, out.attentions)


class AlbertForMaskedLM(_MaskedLMMixin):
    def __init__(self, config: AlbertConfig) -> None:
        super().__init__(config)
        self.albert = AlbertModel(config, add_pooling_layer=False)
        self.predictions = AlbertMLMHead(config)
        self.post_init()

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        labels: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        mlm_positions: Tensor | None = None,
    ) -> MaskedLMOutput:
        """`mlm_positions` [B, P]: `logits` [B, P, V] at those positions only (fill-mask reads the [MASK]s), and
        `labels` then [B, P]; else [B, T, V]."""
        out, hidden = self._encode_for_mlm(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                                           mlm_positions, output_hidden_states, output_attentions)
        logits = self.predictions(hidden)
        loss = cross_entropy(logits, labels) if labels is not None else None
        return MaskedLMOutput(loss, logits, out.hidden_states, out.attentions)


class EarlyExitHead(AlbertPreTrainedModel):
    """A classifier over the pooled [CLS] state after every pass of the shared layer (albert.modeling.early_exit),
    for the
    heads that classify a whole input: trained by PABEE's weighted loss, run with an exit policy at inference."""

    albert: AlbertModel
    classifier: nn.Linear
    dropout: nn.Dropout
    # set by albert.runtime.policy under --compile: (first pass, number of passes) → exit_step over those passes as one
    # compiled function of (x, mask, classifiers) — the classifiers' weights are inputs, so one graph serves every
    # pass of a layer group
    compiled_steps: Callable[[int, int], Callable[..., tuple[Tensor, Tensor]]] | None = None

    def _exit_classifiers(self, out_features: int) -> nn.ModuleList:
        """One classifier per pass but the last (which is `classifier`) when the config says per_pass."""
        n = self.config.num_hidden_layers - 1 if self.config.early_exit == "per_pass" else 0
        return nn.ModuleList([nn.Linear(self.config.hidden_size, out_features) for _ in range(n)])

    def classifier_at(self, i: int) -> nn.Linear:
        """The classifier after pass i (0-based)."""
        last = i == self.config.num_hidden_layers - 1
        if last or self.config.early_exit != "per_pass":
            return self.classifier
        exits: nn.ModuleList = self.exit_classifiers  # type: ignore[assignment]
        return exits[i]  # type: ignore[return-value]  # a ModuleList of nn.Linear

    def _every_pass_logits(self, hidden_states: tuple[Tensor, ...]) -> Tensor:
        """(passes, rows, K): each pass's classifier on its pooled [CLS] state (hidden_states has one state per
        inner layer after the embeddings; a pass ends at every inner_group_num-th)."""
        step = self.config.inner_group_num
        return torch.stack([self.classifier_at(i)(self.dropout(self.albert.pool(h[:, 0])))
                            for i, h in enumerate(hidden_states[step::step])])

    def _policy(self, policy: ExitPolicy | None) -> ExitPolicy | None:
        """The one check of an exit policy, wherever it came from (a pipeline, evaluate, a caller): an active one
        needs this model's classifiers after every pass."""
        if policy is None or not policy.active:
            return None
        require_exits(self.config)
        return policy

    def exit_step(self, i: int, x: Tensor, mask: Tensor | None, weights: list[list[LayerWeights]],
                  classifiers: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        """One step of early exit's loop: passes i, i + 1, ... of the shared layer, one per (weight, bias) of
        `classifiers`, each followed by that classifier on the pooled [CLS] state → (the hidden states after the
        last, the logits: passes × rows × K). Inference only: no dropout."""
        every = []
        for j, (weight, bias) in enumerate(classifiers):
            x = self.albert.encoder.run_pass(i + j, x, mask, weights)[0]
            every.append(F.linear(self.albert.pool(x[:, 0]).to(weight.dtype), weight, bias))  # the classifier's dtype
        return x, torch.stack(every)

    def _run_with_exit(self, input_ids: Tensor, attention_mask: Tensor | None, token_type_ids: Tensor | None,
                       policy: ExitPolicy, regression: bool, group: int = 1) -> tuple[Tensor, Tensor]:
        """(logits, passes) of each example, stopping each where `policy` says (albert.modeling.early_exit)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        enc = self.albert.encoder
        emb = self.albert.embeddings(input_ids, token_type_ids)
        dtype = enc.inference_dtype or compute_dtype(emb)
        heads = [self.classifier_at(i) for i in range(self.config.num_hidden_layers)]
        exits = [(h.weight.detach(), h.bias.detach()) for h in heads]  # plain tensors: the compiled step's inputs
        compiled = self.compiled_steps
        weights = enc.layer_weights(dtype) if compiled is None else []  # the compiled step reads its own

        def step(i: int, k: int, x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
            if compiled is not None:
                return compiled(i, k)(x, mask, exits[i:i + k])
            return self.exit_step(i, x, mask, weights, exits[i:i + k])

        with torch.autocast(emb.device.type, enabled=False):
            return run_with_exit(enc.map_in(emb, dtype), attention_mask, self.config.num_hidden_layers, step, policy,
                                 regression, group, bias=lambda m: attention_bias(m, dtype))


class AlbertForSequenceClassification(EarlyExitHead):
    """num_labels == 1 → regression (MSE); integer labels → cross-entropy; float multi-hot → BCE."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.albert = AlbertModel(config)
        self.dropout = nn.Dropout(config.head_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.exit_classifiers = self._exit_classifiers(config.num_labels)
        self.post_init()

    def problem_type(self, labels: Tensor) -> str:
        if self.config.problem_type is not None:
            return self.config.problem_type
        if self.num_labels == 1:
            return "regression"
        if labels.dtype in (torch.long, torch.int):
            return "single_label_classification"
        return "multi_label_classification"

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        labels: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        exit_policy: ExitPolicy | None = None,
    ) -> SequenceClassifierOutput:
        """`exit_policy` (a model fine-tuned with early exit, in eval mode): each text stops at the pass the policy
        says, and `exit_passes` tells which; without one all passes run."""
        policy = self._policy(exit_policy)
        if policy is not None and not self.training and input_ids is not None:
            regression = self.config.problem_type == "regression" or self.num_labels == 1
            logits, passes = self._run_with_exit(input_ids, attention_mask, token_type_ids, policy, regression)
            return SequenceClassifierOutput(None, logits, exit_passes=passes)
        every_pass = bool(self.config.early_exit) and self.training
        out = self.albert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                          output_hidden_states or every_pass, output_attentions)
        assert out.pooler_output is not None
        exit_logits = self._every_pass_logits(out.hidden_states) if every_pass and out.hidden_states else None
        logits = exit_logits[-1] if exit_logits is not None else self.classifier(self.dropout(out.pooler_output))
        loss = None
        if labels is not None:
            kind = self.problem_type(labels)
            loss = pabee_loss(exit_logits, logits, lambda z: self._loss(z, labels, kind))
        hidden = out.hidden_states if output_hidden_states else None
        return SequenceClassifierOutput(loss, logits, hidden, out.attentions, exit_logits)  # type: ignore[arg-type]

    def _loss(self, logits: Tensor, labels: Tensor, kind: str) -> Tensor:
        if kind == "regression":
            if self.num_labels == 1:
                return F.mse_loss(logits.float().squeeze(), labels.float().squeeze())
            return F.mse_loss(logits.float(), labels.float())
        if kind == "single_label_classification":
            return cross_entropy(logits, labels)
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float())


class AlbertForTokenClassification(AlbertPreTrainedModel):
    def __init__(self, config: AlbertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.albert = AlbertModel(config, add_pooling_layer=False)
        self.dropout = nn.Dropout(config.head_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        labels: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> TokenClassifierOutput:
        out = self.albert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                          output_hidden_states, output_attentions)
        logits = self.classifier(self.dropout(out.last_hidden_state))  # (B, T, num_labels)
        loss = cross_entropy(logits, labels) if labels is not None else None
        return TokenClassifierOutput(loss, logits, out.hidden_states, out.attentions)


class AlbertForMultipleChoice(EarlyExitHead):
    def __init__(self, config: AlbertConfig) -> None:
        super().__init__(config)
        self.albert = AlbertModel(config)
        self.dropout = nn.Dropout(config.head_dropout)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.exit_classifiers = self._exit_classifiers(1)
        self.post_init()

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        labels: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        exit_policy: ExitPolicy | None = None,
    ) -> MultipleChoiceModelOutput:
        """`exit_policy`: as AlbertForSequenceClassification's; a question's options stop together."""
        ref = input_ids if input_ids is not None else inputs_embeds
        assert ref is not None
        C = ref.shape[1]

        def flat(t: Tensor | None) -> Tensor | None:  # (B, C, T, ...) → (B*C, T, ...)
            return None if t is None else t.reshape(-1, *t.shape[2:])

        policy = self._policy(exit_policy)
        if policy is not None and not self.training and input_ids is not None:
            logits, passes = self._run_with_exit(flat(input_ids), flat(attention_mask),  # type: ignore[arg-type]
                                                 flat(token_type_ids), policy, False, group=C)
            return MultipleChoiceModelOutput(None, logits, exit_passes=passes)
        every_pass = bool(self.config.early_exit) and self.training
        out = self.albert(flat(input_ids), flat(attention_mask), flat(token_type_ids), flat(position_ids),
                          flat(inputs_embeds), output_hidden_states or every_pass, output_attentions)
        assert out.pooler_output is not None
        exit_logits = self._every_pass_logits(out.hidden_states).view(-1, len(ref), C) \
            if every_pass and out.hidden_states else None  # (passes, B, C)
        logits = exit_logits[-1] if exit_logits is not None else \
            self.classifier(self.dropout(out.pooler_output)).view(-1, C)  # (B, C)
        loss = None
        if labels is not None:
            loss = pabee_loss(exit_logits, logits, lambda z: cross_entropy(z, labels))
        hidden = out.hidden_states if output_hidden_states else None
        return MultipleChoiceModelOutput(loss, logits, hidden, out.attentions, exit_logits)  # type: ignore[arg-type]


MODEL_CLASSES: dict[str, type[AlbertPreTrainedModel]] = {
    cls.__name__: cls
    for cls in (AlbertModel, AlbertForPreTraining, AlbertForMaskedLM, AlbertForSequenceClassification,
                AlbertForTokenClassification, AlbertForQuestionAnswering, AlbertForMultipleChoice,
                AlbertForQuestionAnsweringWithAnswerability)
}

