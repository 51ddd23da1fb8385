"""The ALBERT backbone: factorized embeddings, one shared transformer layer per group, and the pooler.

Pure torch: no files, printing, optimizers or device logic here. Module and parameter names are
transformers' own, so a state dict moves between the two libraries without renaming.

Precision: the encoder runs in one *compute dtype*: the autocast dtype when autocast is on, else the
parameters' dtype. The shared layer's weights are cast (and Q/K/V packed into one matrix) once per
forward and reused on every layer pass, instead of autocast re-casting them on each of the passes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from albert.modeling.config import AlbertConfig

# The names of every head's modules, across all heads (the backbone is `albert`): heads.py builds its modules under
# these names, the runtime keeps them in fp32 whatever the encoder's precision, and a checkpoint's weights under them
# belong to another head, not to junk. tests/test_heads.py checks every head class against this set.
HEAD_NAMES = frozenset({"predictions", "sop_classifier", "classifier", "exit_classifiers", "qa_outputs",
                        "start_head", "end_head", "answer_head", "dropout"})


def pool_hidden_states(hidden: Tensor, mask: Tensor, pooling: str = "mean") -> Tensor:
    """Sentence vectors (B, H) from last hidden states (B, T, H) over each row's tokens (mask (B, T), 1 for a token;
    [CLS] and [SEP] count): the mean (sentence-transformers' default), the mean times sqrt(tokens), the maximum, or
    [CLS]'s state. `albert embed` and sentence-vector distillation pool through this one function."""
    if pooling == "cls":
        return hidden[:, 0]
    m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    if pooling == "max":
        return hidden.masked_fill(m == 0, float("-inf")).max(1).values
    total, count = (hidden * m).sum(1), m.sum(1).clamp(min=1)
    return total / (count if pooling == "mean" else count.sqrt())


class ModelOutput:
    """Attribute access like transformers' outputs, plus `out[0]` / `out["name"]` over the fields that are set."""

    def _items(self) -> list[tuple[str, Any]]:
        return [(f.name, getattr(self, f.name)) for f in fields(self) if getattr(self, f.name) is not None]  # type: ignore[arg-type]

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return dict(self._items())[key]
        return [v for _, v in self._items()][key]

    def __iter__(self) -> Iterator[Any]:
        return iter(v for _, v in self._items())

    def keys(self) -> list[str]:
        return [k for k, _ in self._items()]

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(v for _, v in self._items())


@dataclass
class BaseModelOutputWithPooling(ModelOutput):
    last_hidden_state: Tensor
    pooler_output: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


def activation_fn(name: str) -> Any:
    if name == "gelu":
        return F.gelu
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "relu":
        return F.relu
    if name in ("silu", "swish"):
        return F.silu
    if name == "tanh":
        return torch.tanh
    raise ValueError(f"unknown activation {name!r}")


def compute_dtype(reference: Tensor) -> torch.dtype:
    """The dtype the encoder computes in: autocast's when it is on for this device, else the weights'."""
    device_type = reference.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return reference.dtype


def extended_attention_mask(attention_mask: Tensor, dtype: torch.dtype) -> Tensor:
    """[B, T] of 1/0 → additive [B, 1, 1, T]; the dtype's minimum (not -10000) keeps bf16/fp16 finite."""
    mask = attention_mask[:, None, None, :].to(dtype)
    return (1.0 - mask) * torch.finfo(dtype).min


def packed_attention_mask(example_ids: Tensor, dtype: torch.dtype) -> Tensor:
    """[B, T] example numbers of packed rows → additive block-diagonal [B, 1, T, T]: a position sees only its own
    example. Padding (0) sees padding, so no row of the softmax is empty (its outputs are never read)."""
    same = example_ids[:, :, None] == example_ids[:, None, :]
    zero = torch.zeros((), dtype=dtype, device=example_ids.device)
    return torch.where(same, zero, torch.finfo(dtype).min)[:, None]


class AlbertEmbeddings(nn.Module):
    def __init__(self, config: AlbertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.embedding_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.embedding_size)
        self.LayerNorm = nn.LayerNorm(config.embedding_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.max_positions = config.max_position_embeddings

    def forward(
        self,
        input_ids: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
    ) -> Tensor:
        if inputs_embeds is None:
            assert input_ids is not None
            inputs_embeds = self.word_embeddings(input_ids)
        B, T = inputs_embeds.shape[:2]
        if T > self.max_positions:
            raise ValueError(f"sequence length {T} exceeds max_position_embeddings ({self.max_positions})")
        if position_ids is None:
            position_ids = torch.arange(T, device=inputs_embeds.device)[None, :]
        x = inputs_embeds + self.position_embeddings(position_ids)
        if token_type_ids is None:
            x = x + self.token_type_embeddings.weight[0]
        else:
            x = x + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))  # (B, T, E)


class LayerWeights(NamedTuple):
    """One shared layer's weights in the compute dtype, Q/K/V packed: prepared once per forward.

    For inference a matrix may instead be a prepared one (a callable of albert.runtime.policy: packed for oneDNN in
    fp32 or
    bf16, or int8), which holds its bias and adds a residual inside its kernel; `ffn_activated`: the FFN's matrix also
    applies the activation."""

    qkv_w: Any
    qkv_b: Tensor | None
    out_w: Any
    out_b: Tensor | None
    ln1_w: Tensor
    ln1_b: Tensor
    ffn_w: Any
    ffn_b: Tensor | None
    ffn_out_w: Any
    ffn_out_b: Tensor | None
    ln2_w: Tensor
    ln2_b: Tensor
    ffn_activated: bool = False


def linear(x: Tensor, w: Any, b: Tensor | None, residual: Tensor | None = None) -> Tensor:
    """x @ w.T + b, plus `residual` if given."""
    if isinstance(w, Tensor):
        y = F.linear(x, w, b)
        return y if residual is None else residual + y
    return w(x, residual)  # a prepared matrix (albert.runtime.policy), fp32 activations


class AlbertAttention(nn.Module):
    def __init__(self, config: AlbertConfig) -> None:
        super().__init__()
        H = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.query = nn.Linear(H, H)
        self.key = nn.Linear(H, H)
        self.value = nn.Linear(H, H)
        self.dense = nn.Linear(H, H)
        self.LayerNorm = nn.LayerNorm(H, eps=config.layer_norm_eps)
        self.attention_dropout = config.attention_probs_dropout_prob
        self.output_dropout = config.hidden_dropout_prob


class AlbertLayer(nn.Module):
    """Post-LN transformer layer. `forward` takes weights from `prepare` so a shared layer casts them once."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__()
        self.attention = AlbertAttention(config)
        self.ffn = nn.Linear(config.hidden_size, config.intermediate_size)
        self.ffn_output = nn.Linear(config.intermediate_size, config.hidden_size)
        self.full_layer_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.activation = activation_fn(config.hidden_act)
        self.hidden_dropout = config.hidden_dropout_prob
        self.eps = config.layer_norm_eps

    def prepare(self, dtype: torch.dtype) -> LayerWeights:
        a = self.attention
        qkv_w = torch.cat([a.query.weight, a.key.weight, a.value.weight])  # (3H, H)
        qkv_b = torch.cat([a.query.bias, a.key.bias, a.value.bias])
        tensors = (qkv_w, qkv_b, a.dense.weight, a.dense.bias, a.LayerNorm.weight, a.LayerNorm.bias,
                   self.ffn.weight, self.ffn.bias, self.ffn_output.weight, self.ffn_output.bias,
                   self.full_layer_layer_norm.weight, self.full_layer_layer_norm.bias)
        return LayerWeights(*(t.to(dtype) for t in tensors))  # type: ignore[arg-type]  # 12 tensors, not the flag

    def forward(
        self, x: Tensor, mask: Tensor | None, w: LayerWeights, output_attentions: bool = False,
        positions: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """`positions` [B, K]: compute the output at those positions only (every position still serves as a key
        and value). Attention output, LayerNorms and FFN then run on K rows instead of T: the last pass of
        pretraining needs only the masked positions and [CLS]."""
        B, T, H = x.shape
        nh, hs = self.attention.num_heads, self.attention.head_dim
        qkv = linear(x, w.qkv_w, w.qkv_b).view(B, T, 3, nh, hs).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, nh, T, hs)
        if positions is not None:  # the rows kept from here on: queries and residual at K positions
            q = torch.gather(q, 2, positions[:, None, :, None].expand(-1, nh, -1, hs))  # (B, nh, K, hs)
            x = torch.gather(x, 1, positions[..., None].expand(-1, -1, H))  # (B, K, H)
            if mask is not None and mask.shape[2] > 1:  # a mask per query (packed rows): its rows at K positions
                mask = torch.gather(mask, 2, positions[:, None, :, None].expand(-1, mask.shape[1], -1, T))
        p_attn = self.attention.attention_dropout if self.training else 0.0
        probs: Tensor | None = None
        if output_attentions:  # SDPA does not return the probabilities
            scores = q @ k.transpose(-1, -2) / math.sqrt(hs)  # (B, nh, T, T)
            if mask is not None:
                scores = scores + mask
            probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
            ctx = F.dropout(probs, p_attn, self.training) @ v
        else:
            # SDPA's fused kernel at every size: inside the model it is the faster one even where two matmuls and a
            # softmax look faster alone (docs/kernel-notes.md)
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p_attn)
        ctx = ctx.transpose(1, 2).reshape(B, q.shape[2], H)  # (B, T or K, H)
        x = F.layer_norm(self._residual(x, ctx, w.out_w, w.out_b), (H,), w.ln1_w, w.ln1_b, self.eps)
        h = linear(x, w.ffn_w, w.ffn_b)  # (B, T, I)
        if not w.ffn_activated:
            h = self.activation(h)
        x = F.layer_norm(self._residual(x, h, w.ffn_out_w, w.ffn_out_b), (H,), w.ln2_w, w.ln2_b, self.eps)
        return x, probs

    def _residual(self, x: Tensor, h: Tensor, w: Any, b: Tensor | None) -> Tensor:
        """x + dropout(h @ w.T + b). Without dropout the sum is one call, so that a prepared matrix adds x inside
        its kernel instead of in another pass over the output."""
        if self.training and self.hidden_dropout > 0:
            return x + F.dropout(linear(h, w, b), self.hidden_dropout, True)
        return linear(h, w, b, residual=x)


class AlbertLayerGroup(nn.Module):
    def __init__(self, config: AlbertConfig) -> None:
        super().__init__()
        self.albert_layers = nn.ModuleList([AlbertLayer(config) for _ in range(config.inner_group_num)])


@dataclass
class EncoderOutput(ModelOutput):
    last_hidden_state: Tensor
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


class AlbertTransformer(nn.Module):
    def __init__(self, config: AlbertConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding_hidden_mapping_in = nn.Linear(config.embedding_size, config.hidden_size)
        self.albert_layer_groups = nn.ModuleList([AlbertLayerGroup(config) for _ in range(config.num_hidden_groups)])
        # Set by albert.runtime.policy for inference: every layer's matrices prepared once (cast, packed for oneDNN, or
        # int8), one list per group, and the dtype the encoder then computes in, whatever the parameters' dtype
        self.prepared_weights: list[list[LayerWeights]] | None = None
        self.inference_dtype: torch.dtype | None = None

    def map_in(self, embeddings: Tensor, dtype: torch.dtype) -> Tensor:
        """The embeddings (E wide) mapped to the layer's width (H), in the compute dtype."""
        m = self.embedding_hidden_mapping_in
        return F.linear(embeddings.to(dtype), m.weight.to(dtype), m.bias.to(dtype))  # (B, T, H)

    def layer_weights(self, dtype: torch.dtype) -> list[list[LayerWeights]]:
        """Every group's layers' weights for one forward: the runtime's prepared ones, else cast now (once, for all
        the passes that share them)."""
        groups: list[AlbertLayerGroup] = list(self.albert_layer_groups)  # type: ignore[arg-type]
        return self.prepared_weights or [[layer.prepare(dtype) for layer in g.albert_layers]  # type: ignore[operator]
                                         for g in groups]

    def group_of_pass(self, i: int) -> int:
        """The layer group the i-th pass (0-based) runs: passes are split evenly over the groups, in order."""
        return i // (self.config.num_hidden_layers // self.config.num_hidden_groups)

    def run_pass(self, i: int, x: Tensor, mask: Tensor | None, weights: list[list[LayerWeights]],
                 output_attentions: bool = False, positions: Tensor | None = None
                 ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """Pass i of the shared layer (its group's inner layers, in order) → the new hidden states, each inner
        layer's output, and their attention probabilities where asked. `positions` applies to the last pass's last
        inner layer only (the caller passes it there)."""
        g = self.group_of_pass(i)
        layers: list[AlbertLayer] = list(self.albert_layer_groups[g].albert_layers)  # type: ignore[union-attr,arg-type]
        outs: list[Tensor] = []
        probs_all: list[Tensor] = []
        for j, (layer, w) in enumerate(zip(layers, weights[g])):
            x, probs = layer(x, mask, w, output_attentions, positions if j == len(layers) - 1 else None)
            if probs is not None:
                probs_all.append(probs)
            outs.append(x)
        return x, outs, probs_all

    def forward(
        self,
        embeddings: Tensor,
        mask: Tensor | None,
        dtype: torch.dtype,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        positions: Tensor | None = None,
    ) -> EncoderOutput:
        """`positions` [B, K]: the last layer computes (and returns) only those positions."""
        x = self.map_in(embeddings, dtype)
        weights = self.layer_weights(dtype)
        # one hidden state per inner layer, as the original TF code's all_layer_outputs and transformers 5 give them
        # (transformers 4 gave one per group pass; the same when inner_group_num is 1)
        all_hidden: list[Tensor] = [x]
        all_attn: list[Tensor] = []
        last = self.config.num_hidden_layers - 1
        for i in range(self.config.num_hidden_layers):
            x, outs, probs = self.run_pass(i, x, mask, weights, output_attentions, positions if i == last else None)
            all_hidden += outs
            all_attn += probs
        return EncoderOutput(
            last_hidden_state=x,
            hidden_states=tuple(all_hidden) if output_hidden_states else None,
            attentions=tuple(all_attn) if output_attentions else None,
        )


class AlbertBackbone(nn.Module):
    """transformers' `AlbertModel` body: embeddings → shared encoder → optional pooler."""

    def __init__(self, config: AlbertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__()
        self.config = config
        self.embeddings = AlbertEmbeddings(config)
        self.encoder = AlbertTransformer(config)
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size) if add_pooling_layer else None

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        output_positions: Tensor | None = None,
        example_ids: Tensor | None = None,
        pool_positions: Tensor | None = None,
    ) -> BaseModelOutputWithPooling:
        """`output_positions` [B, K]: `last_hidden_state` is [B, K, H] at those positions, and the last layer
        computes nothing else (the pooler's [CLS] row is added for it). Not with hidden states or attentions.

        Packed rows (training): `example_ids` [B, T] numbers the examples of a row (0: padding) and attention stays
        inside each; `pool_positions` [B, S] are their [CLS] positions, and `pooler_output` is then [B, S, H]."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if output_positions is not None and (output_hidden_states or output_attentions):
            raise ValueError("output_positions cannot be combined with output_hidden_states or output_attentions")
        emb = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)  # (B, T, E)
        dtype = self.encoder.inference_dtype or compute_dtype(emb)
        mask = packed_attention_mask(example_ids, dtype) if example_ids is not None else \
            attention_bias(attention_mask, dtype)
        pool_at = pool_positions if pool_positions is not None else torch.zeros_like(emb[:, :1, 0], dtype=torch.long)
        keep = output_positions
        if keep is not None and self.pooler is not None:
            keep = torch.cat([pool_at, keep], dim=1)  # the [CLS] rows first, for the pooler
        with torch.autocast(emb.device.type, enabled=False):
            enc = self.encoder(emb, mask, dtype, output_hidden_states, output_attentions, keep)
            hidden = enc.last_hidden_state
            pooled = None
            if self.pooler is not None:
                S = pool_at.shape[1]
                cls = hidden[:, :S] if output_positions is not None else \
                    torch.gather(hidden, 1, pool_at[..., None].expand(-1, -1, hidden.shape[-1]))
                pooled = self.pool(cls)  # (B, S, H)
                if pool_positions is None:
                    pooled = pooled[:, 0]
                if output_positions is not None:
                    hidden = hidden[:, S:]
        return BaseModelOutputWithPooling(
            last_hidden_state=hidden,
            pooler_output=pooled,
            hidden_states=enc.hidden_states,
            attentions=enc.attentions,
        )


    def pool(self, cls: Tensor) -> Tensor:
        """The pooler: tanh(W h + b) of [CLS] hidden states, in their dtype."""
        p = self.pooler
        assert p is not None
        return torch.tanh(F.linear(cls, p.weight.to(cls.dtype), p.bias.to(cls.dtype)))


def attention_bias(attention_mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """The additive attention mask of a padded batch, or None where no position is padding: attention then takes
    its unmasked kernel (the same result). Only on the CPU, where reading the mask costs nothing; on a GPU it would
    stall every step for a host sync."""
    padded = attention_mask is not None and (
        attention_mask.device.type != "cpu" or torch.jit.is_tracing() or torch.compiler.is_compiling()
        or torch.compiler.is_exporting() or not bool(attention_mask.all()))
    return extended_attention_mask(attention_mask, dtype) if padded else None  # type: ignore[arg-type]


def init_weights(module: nn.Module, std: float) -> None:
    """transformers' initialisation: normal(0, std) for linears and embeddings, LayerNorm to identity."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, std)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
