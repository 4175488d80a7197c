"""The hf_longctx encoder-decoder: layers, stacks and the `PreTrainedModel` classes.

Legend: B batch, L length (Ls source, Lt target), D d_model, V vocabulary.

The classic Transformer (Vaswani et al. 2017): encoder layers of self-attention + feed-forward, decoder layers of
causal self-attention + cross-attention + feed-forward, residuals around each with LayerNorm (pre- or post-norm).
Each stack owns one position encoding (`positions.py`), computes what it gives once per forward and hands it to
every layer; cross-attention carries no positions unless `cross_attention_alignment` adds its bias.
"""

import contextvars
import difflib
import inspect
import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.loss.loss_utils import fixed_cross_entropy
from transformers.masking_utils import create_bidirectional_mask, create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutput,
    BaseModelOutputWithPastAndCrossAttentions,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
)
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs, can_return_tuple, logging
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from .attention import ChunkedAttentionPlan, LongCtxAttention
from .configuration_longctx import LongCtxConfig
from .positions import (
    CrossAttentionAlignment,
    LocalWindow,
    PositionEncoding,
    RelativePositions,
    build_position_encoding,
)

logger = logging.get_logger(__name__)

AUTO_MAP = {
    "AutoConfig": "configuration_longctx.LongCtxConfig",
    "AutoModel": "modeling_longctx.LongCtxModel",
    "AutoModelForSeq2SeqLM": "modeling_longctx.LongCtxForConditionalGeneration",
}


def shift_tokens_right(labels: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """Teacher forcing: decoder inputs are the labels shifted right behind the start token; -100 becomes pad."""
    shifted = labels.new_full(labels.shape, pad_token_id)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill(shifted == -100, pad_token_id)


def check_inputs(tokens: torch.Tensor, name: str, is_ids: bool) -> None:
    """(B, L) ids or (B, L, D) embeddings with B, L >= 1; anything else gets a ValueError naming the argument here
    instead of a shape error from inside a layer."""
    expected = "(batch, length)" if is_ids else "(batch, length, d_model)"
    if tokens.dim() != (2 if is_ids else 3):
        hint = f"; add the batch dimension: `{name}[None]`" if tokens.dim() == (1 if is_ids else 2) else ""
        raise ValueError(f"`{name}` must have shape {expected}, got {tuple(tokens.shape)}{hint}.")
    if is_ids and (tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool):
        raise ValueError(f"`{name}` must hold integer token ids, got dtype {tokens.dtype}; pass `{name}.long()`.")
    if tokens.shape[0] == 0:
        raise ValueError(f"`{name}` holds a batch of 0 examples; pass at least one.")
    if tokens.shape[1] == 0:
        raise ValueError(f"`{name}` has length 0; every example needs at least one token.")


# What a forward's `**kwargs` may carry: transformers' `TransformersKwargs` (output flags, Trainer's
# `num_items_in_batch`, the attention backends' keys), `return_dict` (read by `can_return_tuple`) and `use_cache`
# (which `merge_with_config_defaults` hands the encoder too). Anything else is a typo or an argument this model does
# not have, which HF's models drop without a word.
FORWARD_KWARGS = frozenset(
    name for cls in TransformersKwargs.__mro__ for name in getattr(cls, "__annotations__", {})
) | {"return_dict", "use_cache"}
OUTPUT_KWARGS = ("output_attentions", "output_hidden_states", "return_dict")  # the ones worth listing in an error
NOT_SUPPORTED = {  # arguments of other HF seq2seq models that have no meaning here, with what to do instead
    "head_mask": "this model has no head masking (transformers 5 dropped it); drop it",
    "decoder_head_mask": "this model has no head masking (transformers 5 dropped it); drop it",
    "cross_attn_head_mask": "this model has no head masking (transformers 5 dropped it); drop it",
    "token_type_ids": "this model has no token types; drop it (tokenizer(..., return_token_type_ids=False))",
    "cache_position": "the positions come from the cache's length here (`decoder_position_ids` for explicit ones); drop it",
}


def check_forward_kwargs(forward, kwargs: dict, passed_through: frozenset = frozenset()) -> None:
    """A keyword `forward` has no use for gets a TypeError naming it (with the closest argument it may have meant),
    where HF's models would ignore it: `attention_masks=` must not run unmasked. `passed_through`: keywords meant for
    another part of the model that HF hands this one too."""
    unknown = [name for name in kwargs if name not in FORWARD_KWARGS and name not in passed_through]
    if not unknown:
        return
    name = unknown[0]
    if name in NOT_SUPPORTED:
        raise TypeError(f"{forward.__qualname__}() got `{name}`: {NOT_SUPPORTED[name]}.")
    known = [p for p in inspect.signature(forward).parameters if p not in ("self", "kwargs")] + list(OUTPUT_KWARGS)
    close = difflib.get_close_matches(name, known + sorted(FORWARD_KWARGS - set(known)), n=1, cutoff=0.6)
    raise TypeError(
        f"{forward.__qualname__}() got an unexpected keyword argument `{name}`"
        + (f"; did you mean `{close[0]}`?" if close else f"; it takes: {', '.join(known)}.")
    )


def compiling() -> bool:
    """True while torch.compile traces: the checks that read tensors on the host step aside (they run eagerly)."""
    return torch.compiler.is_compiling()


def check_token_ids(config: LongCtxConfig, input_ids: torch.Tensor | None, name: str) -> None:
    """Ids outside the vocabulary get a ValueError here, not an IndexError from inside an embedding. It reads the
    ids' range on the host, so it runs eagerly only: `torch.compile` traces past it (a decoder's steps:
    `decoder_ids_need_check`)."""
    if input_ids is None or input_ids.numel() == 0 or compiling():
        return
    low, high = int(input_ids.min()), int(input_ids.max())
    if low < 0 or high >= config.vocab_size:
        raise ValueError(
            f"`{name}` holds ids in [{low}, {high}] but `vocab_size` is {config.vocab_size}: every id must be "
            f"in [0, {config.vocab_size - 1}]. Check the tokenizer matches the model, or call "
            "`model.resize_token_embeddings(len(tokenizer))`."
        )


# True while `generate` runs: its decoding steps past the first feed back ids the model itself produced
_GENERATING = contextvars.ContextVar("hf_longctx_generating", default=False)


def decoder_ids_need_check(first_step: bool, device: torch.device) -> bool:
    """Whether a decoder step checks its ids against the vocabulary (a host read): always, except past the first
    step of `generate` on an accelerator, where the ids are the model's own and the read would sync every token;
    never while `torch.compile` traces."""
    if compiling():
        return False
    return first_step or device.type == "cpu" or not _GENERATING.get()


def attended_keys(mask_B1QK: torch.Tensor) -> torch.Tensor:
    """(B, S) bool: the keys some query may attend under a ready 4-D mask (bool, or additive with finfo.min)."""
    allowed = mask_B1QK if mask_B1QK.dtype == torch.bool else mask_B1QK > torch.finfo(mask_B1QK.dtype).min / 2
    return allowed[:, 0].any(-2)


def keys_of(mask: torch.Tensor | None) -> torch.Tensor | None:
    """The (B, S) keys of an encoder mask given as (B, S) or as a ready 4-D mask (`attended_keys`); None stays None."""
    return attended_keys(mask) if mask is not None and mask.dim() == 4 else mask


def check_position_ids(
    positions: torch.Tensor, tokens_shape: tuple[int, ...], name: str, tokens_name: str
) -> torch.Tensor:
    """Explicit positions, (L,) shared by the batch or (B or 1, L) one row per example, as non-negative integers;
    anything else gets a ValueError naming the argument. Returns them as (L,) or (B or 1, L)."""
    if positions.dim() not in (1, 2):
        raise ValueError(
            f"`{name}` must have shape (length,) or (batch or 1, length), got {tuple(positions.shape)}."
        )
    if positions.dtype not in (torch.int64, torch.int32):  # narrower ints wrap in the offsets; uint8 indexes as a mask
        raise ValueError(f"`{name}` must hold int64 (or int32) positions, got dtype {positions.dtype}; pass `{name}.long()`.")
    batch, length = tokens_shape[:2]
    if positions.shape[-1] != length or (positions.dim() == 2 and positions.shape[0] not in (1, batch)):
        raise ValueError(
            f"`{name}` has shape {tuple(positions.shape)} but `{tokens_name}` has shape {(batch, length)}: give one "
            "position per token, shared by the batch (length,) or one row per example (batch, length)."
        )
    lowest = int(positions.min())
    if lowest < 0:
        raise ValueError(f"`{name}` holds negative positions (lowest {lowest}); positions count from 0.")
    return positions


def check_mask_shape(mask: torch.Tensor | None, expected: tuple[int, int], mask_name: str, ids_name: str) -> None:
    if mask is not None and mask.dim() == 2 and tuple(mask.shape) != tuple(expected):
        raise ValueError(
            f"`{mask_name}` has shape {tuple(mask.shape)} but `{ids_name}` has shape {tuple(expected)}; "
            "pass the mask the tokenizer returned with these ids (same batch and length)."
        )


def _norm(config: LongCtxConfig) -> nn.Module:
    if config.norm_type == "rmsnorm":
        return nn.RMSNorm(config.d_model, eps=config.layer_norm_eps)
    return nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)


class LongCtxScaledEmbedding(nn.Embedding):
    """Token embeddings times `embed_scale` (sqrt(d_model) with `scale_embedding`, else 1), inside the module as
    BART does, so `model(inputs_embeds=model.get_input_embeddings()(ids))` equals `model(input_ids=ids)`."""

    def __init__(self, num_embeddings: int, embedding_dim: int, embed_scale: float = 1.0):
        super().__init__(num_embeddings, embedding_dim)
        self.embed_scale = embed_scale

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return super().forward(input_ids) * self.embed_scale


def _token_embedding(config: LongCtxConfig) -> LongCtxScaledEmbedding:
    scale = config.d_model**0.5 if config.scale_embedding else 1.0
    return LongCtxScaledEmbedding(config.vocab_size, config.d_model, embed_scale=scale)


class LongCtxFeedForward(nn.Module):
    """FFN(x) = W2 act(W1 x + b1) + b2, or with `gated_ffn` W2 (act(W1 x) * V x) (Shazeer 2020, T5 v1.1)."""

    def __init__(self, config: LongCtxConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.d_model, config.d_ff, bias=config.ffn_bias)
        self.fc1_linear = nn.Linear(config.d_model, config.d_ff, bias=config.ffn_bias) if config.gated_ffn else None
        self.fc2 = nn.Linear(config.d_ff, config.d_model, bias=config.ffn_bias)
        self.act = ACT2FN[config.activation_function]
        self.activation_dropout = config.activation_dropout

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        gate = self.fc1_linear(hidden_states) if self.fc1_linear is not None else None
        hidden_states = self.act(self.fc1(hidden_states))
        if gate is not None:
            hidden_states = hidden_states * gate
        hidden_states = F.dropout(hidden_states, p=self.activation_dropout, training=self.training)
        return self.fc2(hidden_states)


class Residual(nn.Module):
    """x + dropout(f(norm(x))) in pre-norm, norm(x + dropout(f(x))) in post-norm."""

    def __init__(self, config: LongCtxConfig):
        super().__init__()
        self.norm = _norm(config)
        self.pre_norm = config.pre_norm
        self.dropout = config.dropout

    def forward(self, hidden_states: torch.Tensor, sublayer, *args, **kwargs):
        inputs = self.norm(hidden_states) if self.pre_norm else hidden_states
        output = sublayer(inputs, *args, **kwargs)
        output = output[0] if isinstance(output, tuple) else output
        hidden_states = hidden_states + F.dropout(output, p=self.dropout, training=self.training)
        return hidden_states if self.pre_norm else self.norm(hidden_states)


class LongCtxTokenConv(nn.Module):
    """x + depthwise causal conv over the last `kernel_size` tokens of x (pads zeroed first). With `segments`
    ((B or 1, L) ids of the packed source each token belongs to), a token reads only the tokens of its own source."""

    def __init__(self, config: LongCtxConfig):
        super().__init__()
        self.kernel_size = config.encoder_conv_kernel
        self.weight = nn.Parameter(torch.zeros(config.d_model, 1, self.kernel_size))

    def forward(self, hidden_states, token_mask=None, segments=None):
        x = hidden_states if token_mask is None else hidden_states * token_mask
        weight = self.weight.to(x.dtype)
        if segments is None:
            x = F.pad(x.transpose(1, 2), (self.kernel_size - 1, 0))
            return hidden_states + F.conv1d(x, weight, groups=hidden_states.shape[-1]).transpose(1, 2)
        # conv1d's weight[:, 0, j] multiplies the token kernel_size - 1 - j before; the same sum, offset by offset
        mixed = x * weight[:, 0, -1]
        for offset in range(1, min(self.kernel_size, x.shape[1])):
            same = F.pad(segments[:, offset:] == segments[:, :-offset], (offset, 0))[..., None]
            mixed = mixed + F.pad(x, (0, 0, offset, 0))[:, : x.shape[1]] * same * weight[:, 0, -1 - offset]
        return hidden_states + mixed


class LongCtxEncoderLayer(GradientCheckpointingLayer):
    def __init__(self, config: LongCtxConfig, layer_idx: int):
        super().__init__()
        self.token_conv = LongCtxTokenConv(config) if config.encoder_conv_kernel else None
        self.self_attn = LongCtxAttention(config, layer_idx, is_causal=False)
        self.self_attn_residual = Residual(config)
        self.ffn = LongCtxFeedForward(config)
        self.ffn_residual = Residual(config)

    # Position inputs are positional arguments: gradient checkpointing then treats the shared bias as an input of
    # each layer, and backward does not run through its graph once per layer. (HF's default, non-reentrant
    # checkpointing; with `use_reentrant=True` a learned bias on the long-input path, whose plan is not a positional
    # tensor, fails in backward.)
    def forward(
        self,
        hidden_states,
        attention_mask=None,
        position_bias=None,
        position_embeddings=None,
        token_mask=None,
        segments=None,
        chunked_plan=None,
        **kwargs,
    ):
        attention = self.self_attn
        if self.token_conv is not None:  # the convolution mixes the attention's (normalised) input

            def attention(inputs, **attention_kwargs):
                return self.self_attn(self.token_conv(inputs, token_mask, segments), **attention_kwargs)

        hidden_states = self.self_attn_residual(
            hidden_states,
            attention,
            attention_mask=attention_mask,
            position_bias=position_bias,
            position_embeddings=position_embeddings,
            chunked_plan=chunked_plan,
            **kwargs,
        )
        return self.ffn_residual(hidden_states, self.ffn)


class LongCtxDecoderLayer(GradientCheckpointingLayer):
    def __init__(self, config: LongCtxConfig, layer_idx: int):
        super().__init__()
        self.self_attn = LongCtxAttention(config, layer_idx, is_causal=True)
        self.self_attn_residual = Residual(config)
        self.encoder_attn = LongCtxAttention(config, layer_idx, is_causal=False)
        self.encoder_attn_residual = Residual(config)
        self.ffn = LongCtxFeedForward(config)
        self.ffn_residual = Residual(config)

    def forward(
        self,
        hidden_states,
        attention_mask=None,
        encoder_hidden_states=None,  # tensors are positional, for gradient checkpointing
        encoder_attention_mask=None,
        position_bias=None,
        position_embeddings=None,
        alignment_bias=None,
        cache: Cache | None = None,
        logn_scale: torch.Tensor | None = None,
        chunked_plan=None,
        **kwargs,
    ):
        hidden_states = self.self_attn_residual(
            hidden_states,
            self.self_attn,
            attention_mask=attention_mask,
            position_bias=position_bias,
            position_embeddings=position_embeddings,
            cache=cache,
            chunked_plan=chunked_plan,
            **kwargs,
        )
        if encoder_hidden_states is not None:  # a decoder run alone (as BART allows) has nothing to attend to
            hidden_states = self.encoder_attn_residual(
                hidden_states,
                self.encoder_attn,
                key_value_states=encoder_hidden_states,
                attention_mask=encoder_attention_mask,
                position_bias=alignment_bias,
                cache=cache,
                logn_scale=logn_scale,
                **kwargs,
            )
        return self.ffn_residual(hidden_states, self.ffn)


class LongCtxPreTrainedModel(PreTrainedModel):
    config: LongCtxConfig
    config_class = LongCtxConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["LongCtxEncoderLayer", "LongCtxDecoderLayer"]
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    def _init_weights(self, module):
        super()._init_weights(module)  # Linear and Embedding ~ N(0, init_std), biases 0, norms 1/0
        if self.config.initializer == "fan_in":
            _init_fan_in(module, self.config)
        if isinstance(module, LongCtxTokenConv):
            init.normal_(module.weight, std=self.config.init_std)
        if isinstance(module, CrossAttentionAlignment):
            module.init_parameters()
        if isinstance(module, PositionEncoding):
            with torch.no_grad():
                module.init_buffers()  # deterministic tables are not in checkpoints (T4)
                module.init_parameters()
        if isinstance(module, LongCtxForConditionalGeneration) and module.config.final_logits_bias:
            init.zeros_(module.final_logits_bias)

    def save_pretrained(self, save_directory, *args, **kwargs):
        # `save_pretrained` writes an auto_map entry only for the class being saved; a hub folder should open
        # with AutoConfig, AutoModel and AutoModelForSeq2SeqLM alike.
        if getattr(type(self), "_auto_class", None) is not None:
            self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), **AUTO_MAP}
        return super().save_pretrained(save_directory, *args, **kwargs)


def _init_fan_in(module: nn.Module, config: LongCtxConfig) -> None:
    """T5's initialisation (`T5PreTrainedModel._init_weights`): weights N(0, 1/fan_in), token embeddings N(0, 1).

    HF initialises leaf modules before their parents and never twice, so the rule is per leaf; a leaf that needs
    another std than its kind's carries it as `fan_in_std` (set where the module is built)."""
    if isinstance(module, nn.Linear):
        init.normal_(module.weight, std=getattr(module, "fan_in_std", module.in_features**-0.5))
    elif isinstance(module, nn.Embedding):  # token embeddings, a learned position table, the relative bias
        init.normal_(module.weight, std=getattr(module, "fan_in_std", 1.0))


class LongCtxStack(LongCtxPreTrainedModel):
    """What the encoder and decoder share: embeddings, the position encoding and its per-forward inputs."""

    causal = False
    position_type_field = "position_embedding_type"

    def __init__(self, config: LongCtxConfig):
        super().__init__(config)
        self.embed_tokens = _token_embedding(config)
        encoding = getattr(config, self.position_type_field)
        self.position = build_position_encoding(encoding, config, causal=self.causal)
        # `relative_bias`: T5's learned buckets on the scores, on top of the encoding
        self.relative_bias = RelativePositions(config, self.causal) if config.has_relative_bias(encoding) else None
        # `encoder_local_radius`: the encoder's keys past the radius masked, as one more score bias
        local = config.encoder_local_radius is not None and not self.causal
        self.local_window = LocalWindow(config, self.causal) if local else None
        self.dropout = config.dropout
        self.final_norm = _norm(config) if config.pre_norm else nn.Identity()
        self.embedding_norm = _norm(config) if config.embedding_norm else nn.Identity()
        self.gradient_checkpointing = False

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def _embed(self, input_ids, inputs_embeds, positions, side: str, length: int | None = None):
        """`length`: how many positions `positions` spans, where the caller knows it without reading them."""
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        if not compiling():  # it reads the length on the host
            if length is None:
                length = int(positions.max()) + 1 if positions.numel() else 0
            self.position.check_length(int(length), side)
        hidden_states = self.embedding_norm(self.position.add_to_embeddings(inputs_embeds, positions))
        return inputs_embeds, F.dropout(hidden_states, p=self.dropout, training=self.training)

    def _check_tokens(
        self, input_ids, inputs_embeds, ids_name: str, embeds_name: str, check_ids: bool = True
    ) -> torch.Tensor:
        """Exactly one of ids / embeddings, of a shape and dtype the stack takes (and, with `check_ids`, ids inside
        the vocabulary); returns the one given."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError(f"{type(self).__name__}: pass exactly one of `{ids_name}` or `{embeds_name}`.")
        if input_ids is not None:
            check_inputs(input_ids, ids_name, is_ids=True)
            if check_ids:
                check_token_ids(self.config, input_ids, ids_name)
            return input_ids
        check_inputs(inputs_embeds, embeds_name, is_ids=False)
        return inputs_embeds

    def _score_biases(self) -> list[PositionEncoding]:
        """What adds to this stack's self-attention scores: a bias encoding, `relative_bias`, the encoder's local
        window, any of them or none."""
        modules = (self.position, self.relative_bias, self.local_window)
        return [module for module in modules if module is not None and module.adds_score_bias]

    def _position_bias(self, q_positions, k_positions) -> torch.Tensor:
        """(1 or B, H, Lq, Lk): the sum of `_score_biases` (B: positions given per example)."""
        return sum(module.bias(q_positions, k_positions) for module in self._score_biases())

    def _use_chunked(self, key_length: int, output_attentions: bool) -> bool:
        mode = self.config.chunked_attention
        if not self._score_biases() or mode == "never":
            return False
        if output_attentions and self.config._attn_implementation == "eager":
            return False  # the chunked path has no weights to return; asking for them costs the dense path
        return mode == "always" or key_length >= self.config.chunked_attention_min_length

    def _offset_values(self, q_positions, k_len, first_positions, dtype) -> tuple[torch.Tensor | None, tuple | None]:
        """The bias of every offset k - q of consecutive positions, once for all layers and blocks, and the indices
        past which its trainable part is constant (`ChunkedAttentionPlan.offset_values`, `constant_offsets`); None
        where positions are not consecutive or the bias is not an offset's."""
        biases = self._score_biases()
        if first_positions is None or not all(module.bias_is_offset_only for module in biases):
            return None, None
        q_len = len(q_positions)
        lowest = first_positions[1] - (first_positions[0] + q_len - 1)
        values = sum(module.bias_by_offset(lowest, q_len + k_len - 1, q_positions.device) for module in biases)
        beyond = [module.trainable_constant_beyond() for module in biases]
        constant = None if None in beyond else (-max(1, *beyond) - lowest, max(1, *beyond) - lowest)
        return values.to(dtype).contiguous(), constant

    def _self_attention_inputs(
        self, q_positions, k_positions, padding_mask, make_dense_mask, dtype, kwargs, first_positions=None, past_length=0
    ):
        """(attention_mask, position_bias, position_embeddings, chunked_plan) for this forward, computed once for all
        layers: the one place that chooses between the dense bias and the long-input path, whose plan then replaces
        the mask and the bias. `first_positions` = (first query, first key) says the positions are consecutive."""
        rotary = self.position.rotary_inputs(q_positions, dtype)
        output_attentions = kwargs.get("output_attentions") or self.config.output_attentions
        if self._use_chunked(k_positions.shape[-1], output_attentions):
            key_padding, full_mask = None, None
            if padding_mask is not None and padding_mask.dim() == 4:  # a ready mask, e.g. from generate
                full_mask = padding_mask
            elif padding_mask is not None and not bool(padding_mask.all()):
                # a static cache has more key slots than mask columns: the slots past the mask are not attended
                key_padding = F.pad(padding_mask.bool(), (0, k_positions.shape[-1] - padding_mask.shape[1]))
            offset_values, constant_offsets = self._offset_values(
                q_positions, k_positions.shape[-1], first_positions, dtype
            )
            plan = ChunkedAttentionPlan(
                self._position_bias,
                q_positions,
                k_positions,
                key_padding,
                self.causal,
                self.config.chunked_attention_block_size,
                full_mask,
                offset_values=offset_values,
                first_query_index=past_length,
                constant_offsets=constant_offsets,
            )
            return None, None, rotary, plan
        bias = self._position_bias(q_positions, k_positions).to(dtype) if self._score_biases() else None
        return make_dense_mask(), bias, rotary, None


class LongCtxEncoder(LongCtxStack):
    _can_record_outputs = {"hidden_states": LongCtxEncoderLayer, "attentions": LongCtxAttention}

    def __init__(self, config: LongCtxConfig):
        super().__init__(config)
        self.layers = nn.ModuleList([LongCtxEncoderLayer(config, i) for i in range(config.encoder_layers)])
        self.post_init()

    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        inputs_embeds=None,
        position_ids=None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutput:
        r"""
        position_ids (`(L,)` or `(B, L)`, *optional*): each token's position (e.g. restarting at each source packed
            into a row, with a block-diagonal 4-D `attention_mask`). Default: 0, 1, 2, ... (randomized in training
            when `randomized_positions_max_length` is set; explicit positions are used as given).
        """
        # `generate` hands an encoder that takes **kwargs every model keyword not meant for the decoder (prefix
        # `decoder_`): Seq2SeqTrainer's evaluation passes `labels` that way
        check_forward_kwargs(self.forward, kwargs, passed_through=frozenset({"labels"}))
        tokens = self._check_tokens(input_ids, inputs_embeds, "input_ids", "inputs_embeds")
        check_mask_shape(attention_mask, tokens.shape[:2], "attention_mask", "input_ids")
        length, device = tokens.shape[1], tokens.device
        positions, first_positions = torch.arange(length, device=device), (0, 0)
        bound = self.config.randomized_positions_max_length
        segments = None  # packed sources (positions restarting), so that the convolution stays inside each one
        if position_ids is not None:  # consecutive or not, the bias is built from them (no Toeplitz shortcut)
            positions = check_position_ids(position_ids, tokens.shape, "position_ids", "input_ids").to(device)
            first_positions = None
            restarts = positions[..., 1:] <= positions[..., :-1]
            if self.config.encoder_conv_kernel and bool(restarts.any()):
                segments = F.pad(restarts.cumsum(-1), (1, 0)).reshape(-1, length)
        elif self.training and bound is not None and bound != length:  # randomized positions (Ruoss et al. 2023)
            if bound < length:
                raise ValueError(
                    f"`randomized_positions_max_length`={bound} is below this training batch's {length} source tokens: "
                    "positions are drawn below the bound, so give at least the longest training source (better: the "
                    "longest length the model is to run at)."
                )
            positions, first_positions = torch.randperm(bound, device=device)[:length].sort().values, None
        inputs_embeds, hidden_states = self._embed(input_ids, inputs_embeds, positions, "encoder")

        mask, bias, rotary, plan = self._self_attention_inputs(
            positions,
            positions,
            attention_mask,
            lambda: create_bidirectional_mask(self.config, inputs_embeds, attention_mask),
            hidden_states.dtype,
            kwargs,
            first_positions,
        )
        token_mask = None  # (B, L, 1): the encoder convolution reads padded slots as zeros
        if attention_mask is not None and self.config.encoder_conv_kernel:
            keys = attended_keys(attention_mask) if attention_mask.dim() == 4 else attention_mask
            token_mask = keys[:, :, None].to(hidden_states.dtype)
        for layer in self.layers:
            hidden_states = layer(hidden_states, mask, bias, rotary, token_mask, segments, chunked_plan=plan, **kwargs)
        return BaseModelOutput(last_hidden_state=self.final_norm(hidden_states))


class LongCtxDecoder(LongCtxStack):
    causal = True
    position_type_field = "decoder_position_embedding_type"
    _can_record_outputs = {
        "hidden_states": LongCtxDecoderLayer,
        "attentions": OutputRecorder(LongCtxAttention, index=1, layer_name="self_attn"),
        "cross_attentions": OutputRecorder(LongCtxAttention, index=1, layer_name="encoder_attn"),
    }

    def __init__(self, config: LongCtxConfig):
        super().__init__(config)
        self.layers = nn.ModuleList([LongCtxDecoderLayer(config, i) for i in range(config.decoder_layers)])
        self.cross_alignment = CrossAttentionAlignment(config) if config.cross_attention_alignment else None
        self.post_init()

    @merge_with_config_defaults
    @capture_outputs
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        cache: Cache | None = None,
        inputs_embeds=None,
        use_cache: bool | None = None,
        position_ids=None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPastAndCrossAttentions:
        r"""
        position_ids (`(L,)` or `(B, L)`, *optional*): the positions of these decoder tokens. Default: counted on
            from the cache's length. With a non-empty cache only where the keys carry their positions (rotary,
            additive, none); a score bias needs the cached keys' positions, which the cache does not keep.
        """
        check_forward_kwargs(self.forward, kwargs)
        if use_cache and cache is None:
            cache = EncoderDecoderCache(DynamicCache(config=self.config), DynamicCache(config=self.config))
        elif cache is not None and not isinstance(cache, EncoderDecoderCache) and encoder_hidden_states is not None:
            # A plain cache would receive the cross-attention keys and values after the self-attention ones (and
            # count them as decoded tokens): it is the self-attention cache; the cross-attention gets its own.
            cache = EncoderDecoderCache(cache, DynamicCache(config=self.config))
        self_cache = cache.self_attention_cache if isinstance(cache, EncoderDecoderCache) else cache
        # An int, or (a static cache past its first step) a 0-d tensor, which is read on the host only eagerly
        past_length = self_cache.get_seq_length() if self_cache is not None else 0
        # (a static cache reset for reuse has a tensor length of 0: read eagerly, it is still a first step)
        first_step = past_length == 0 if isinstance(past_length, int) else not compiling() and int(past_length) == 0
        check_ids = input_ids is None or decoder_ids_need_check(first_step, input_ids.device)
        tokens = self._check_tokens(input_ids, inputs_embeds, "decoder_input_ids", "decoder_inputs_embeds", check_ids)

        length, device = tokens.shape[1], tokens.device
        q_positions = torch.arange(length, device=device) + past_length
        mask_columns = attention_mask.shape[1] if attention_mask is not None and attention_mask.dim() == 2 else None
        if mask_columns is not None and not compiling() and mask_columns != past_length + length:
            raise ValueError(
                f"`decoder_attention_mask` covers {attention_mask.shape[1]} positions but the decoder sees "
                f"{past_length + length} ({past_length} cached + {length} new); give one mask column per decoder token."
            )
        # Keys as the cache will hold them: a static cache keeps `max_cache_len` slots, the causal mask hides
        # the slots not yet written.
        key_length = self_cache.get_mask_sizes(length, 0)[0] if self_cache is not None else length
        if first_step and key_length > length and position_ids is None:
            # a static cache: its slots are the positions decoding will reach, checked now, eagerly (the compiled
            # steps do not check, and a learned table would be read past its end)
            self.position.check_length(key_length, "generation")
        k_positions = torch.arange(key_length, device=device)
        if position_ids is not None:
            q_positions = check_position_ids(position_ids, tokens.shape, "decoder_position_ids", "decoder_input_ids")
            q_positions = q_positions.to(device)
            if self._score_biases() and self_cache is not None:
                raise ValueError(
                    "`decoder_position_ids` with a cache: the cache does not keep its keys' positions, and this "
                    f"decoder's self-attention bias ({', '.join(type(m).__name__ for m in self._score_biases())}) needs "
                    "them at every later step. Decode without a cache (`use_cache=False`), or leave the positions to the "
                    "default (counted from the cache length)."
                )
            k_positions = q_positions  # no cache: the keys are these tokens
        side = "decoder" if first_step else "generation"
        known_length = past_length + length if position_ids is None else None  # no read of the positions
        inputs_embeds, hidden_states = self._embed(input_ids, inputs_embeds, q_positions, side, known_length)

        mask, bias, rotary, plan = self._self_attention_inputs(
            q_positions,
            k_positions,
            attention_mask,
            lambda: create_causal_mask(self.config, inputs_embeds, attention_mask, cache=self_cache),
            hidden_states.dtype,
            kwargs,
            past_length=past_length,
        )
        source_keys = keys_of(encoder_attention_mask)  # once, for the two that count each example's keys
        logn_scale = self._logn_scale(encoder_hidden_states, source_keys, hidden_states.dtype)
        alignment_bias = self._alignment_bias(q_positions, encoder_hidden_states, source_keys, hidden_states.dtype)
        encoder_attention_mask = create_bidirectional_mask(
            self.config, inputs_embeds, encoder_attention_mask, encoder_hidden_states=encoder_hidden_states
        )
        for layer in self.layers:
            hidden_states = layer(
                hidden_states,
                mask,
                encoder_hidden_states,
                encoder_attention_mask,
                bias,
                rotary,
                alignment_bias,
                cache=cache,
                logn_scale=logn_scale,
                chunked_plan=plan,
                **kwargs,
            )
        return BaseModelOutputWithPastAndCrossAttentions(last_hidden_state=self.final_norm(hidden_states), cache=cache)

    def _alignment_bias(self, q_positions, encoder_hidden_states, source_keys, dtype) -> torch.Tensor | None:
        """(B or 1, H, Lq, Ls): `cross_attention_alignment`'s bias for these decoder positions, once for all layers;
        None when the option is off. `source_keys`: the (B, Ls) encoder mask, or None."""
        if self.cross_alignment is None or encoder_hidden_states is None:
            return None
        return self.cross_alignment(q_positions, source_keys, encoder_hidden_states.shape[1]).to(dtype)

    def _logn_scale(self, encoder_hidden_states, source_keys, dtype) -> torch.Tensor | None:
        """(B, 1, 1, 1) = max(1, log(n) / log(`cross_attention_logn_length`)), n = each example's unpadded encoder
        tokens (`source_keys`, the encoder mask, 2-D or a ready 4-D one, or None: every token), so a padded batch
        decodes as each example alone; None when the option is off."""
        trained = self.config.cross_attention_logn_length
        if trained is None or encoder_hidden_states is None:
            return None
        batch, length = encoder_hidden_states.shape[:2]
        source_keys = keys_of(source_keys)
        if source_keys is not None:
            n = source_keys.sum(-1).clamp(min=1).float()
        else:
            n = torch.full((batch,), float(length), device=encoder_hidden_states.device)
        return (n.log() / math.log(trained)).clamp(min=1.0).view(-1, 1, 1, 1).to(dtype)


class LongCtxModel(LongCtxPreTrainedModel):
    _tied_weights_keys = {
        "encoder.embed_tokens.weight": "shared.weight",
        "decoder.embed_tokens.weight": "shared.weight",
    }

    def __init__(self, config: LongCtxConfig):
        super().__init__(config)
        self.shared = _token_embedding(config)
        # Each stack owns its embedding; `_tied_weights_keys` ties them to `shared` when `tie_word_embeddings`
        # (as BART does), so a checkpoint that lacks `shared.weight` reports it missing instead of leaving it
        # on the meta device.
        self.encoder = LongCtxEncoder(config)
        self.decoder = LongCtxDecoder(config)
        self.post_init()

    def get_input_embeddings(self):
        return self.shared

    def set_input_embeddings(self, value):
        self.shared = value
        self.encoder.embed_tokens = value
        self.decoder.embed_tokens = value

    def get_encoder(self):
        return self.encoder

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        encoder_outputs=None,
        cache: Cache | None = None,
        inputs_embeds=None,
        decoder_inputs_embeds=None,
        use_cache: bool | None = None,
        position_ids=None,
        decoder_position_ids=None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> Seq2SeqModelOutput:
        r"""
        position_ids / decoder_position_ids (`(L,)` or `(B, L)`, *optional*): explicit positions of the encoder /
            decoder tokens (see `LongCtxEncoder.forward` / `LongCtxDecoder.forward`); default 0, 1, 2, ...
        """
        check_forward_kwargs(self.forward, kwargs)
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            raise ValueError(
                "LongCtxModel needs `decoder_input_ids` (or `decoder_inputs_embeds`); pass `labels` to "
                "LongCtxForConditionalGeneration to build them by shifting the labels right."
            )
        if encoder_outputs is not None and position_ids is not None:
            raise ValueError(
                "`position_ids` are the encoder's, and `encoder_outputs` were computed already: pass the positions to "
                "the encoder call that made them (`model.get_encoder()(input_ids, position_ids=...)`), or pass "
                "`input_ids` instead of `encoder_outputs`."
            )
        if encoder_outputs is None:
            if input_ids is None and inputs_embeds is None:
                raise ValueError(
                    "Nothing to encode: pass `input_ids` (or `inputs_embeds`) for the source, or `encoder_outputs` "
                    "computed before (e.g. `model.get_encoder()(input_ids)`)."
                )
            encoder_outputs = self.encoder(
                input_ids=input_ids,
                attention_mask=attention_mask,
                inputs_embeds=inputs_embeds,
                position_ids=position_ids,
                **kwargs,
            )
        elif not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(
                last_hidden_state=encoder_outputs[0],
                hidden_states=encoder_outputs[1] if len(encoder_outputs) > 1 else None,
                attentions=encoder_outputs[2] if len(encoder_outputs) > 2 else None,
            )
        encoder_states = encoder_outputs.last_hidden_state
        if attention_mask is not None:
            batch, source_length = encoder_states.shape[:2]
            # a (B, S) padding mask, or a ready (B or 1, 1, Lq, S) mask as the encoder takes it
            fits = (
                tuple(attention_mask.shape) == (batch, source_length)
                if attention_mask.dim() != 4
                else attention_mask.shape[0] in (1, batch) and attention_mask.shape[-1] == source_length
            )
            if not fits:
                raise ValueError(
                    f"`attention_mask` has shape {tuple(attention_mask.shape)} but the encoder output covers "
                    f"{(batch, source_length)} (batch, source length); pass the mask of these inputs."
                )
        if attention_mask is not None and attention_mask.dim() == 4:  # the decoder attends each source key once
            attention_mask = attended_keys(attention_mask).expand(encoder_states.shape[0], -1)
        decoder_outputs = self.decoder(
            input_ids=decoder_input_ids,
            attention_mask=decoder_attention_mask,
            encoder_hidden_states=encoder_states,
            encoder_attention_mask=attention_mask,
            cache=cache,
            inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            position_ids=decoder_position_ids,
            **kwargs,
        )
        return Seq2SeqModelOutput(
            last_hidden_state=decoder_outputs.last_hidden_state,
            cache=decoder_outputs.cache,
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_states,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )


class LongCtxForConditionalGeneration(LongCtxPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.shared.weight"}

    def __init__(self, config: LongCtxConfig):
        super().__init__(config)
        self.model = LongCtxModel(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.lm_head.fan_in_std = 1.0  # `initializer="fan_in"`: T5 draws an untied head from N(0, 1)
        if config.final_logits_bias:  # a buffer, as in BART: fixed by the checkpoint, not trained
            self.register_buffer("final_logits_bias", torch.zeros(1, config.vocab_size))
        self.post_init()

    def resize_token_embeddings(self, new_num_tokens=None, pad_to_multiple_of=None, mean_resizing=True):
        embeddings = super().resize_token_embeddings(new_num_tokens, pad_to_multiple_of, mean_resizing)
        if self.config.final_logits_bias:
            old, new = self.final_logits_bias, embeddings.weight.shape[0]
            resized = old.new_zeros(1, new)
            resized[:, : min(new, old.shape[1])] = old[:, :new]
            self.final_logits_bias = resized
        return embeddings

    def get_encoder(self):
        return self.model.encoder

    def generate(self, *args, **kwargs):
        if self.config._attn_implementation == "flex_attention" and self.device.type == "cpu":
            # measured with torch 2.13: inductor fails to compile FlexAttention's decoding kernel on CPU
            # (CppCompileError), even for a 30-token source; a forward pass without gradients works
            raise ValueError(
                "`generate` with attn_implementation='flex_attention' does not run on CPU (PyTorch's inductor cannot "
                "compile FlexAttention's decoding kernel there). Generate with 'sdpa' (the default) or 'eager': "
                "`model.set_attn_implementation('sdpa')`, or load with attn_implementation='sdpa'."
            )
        # the ids `generate` feeds the decoder by itself (finished rows get the pad id), checked once here
        generation_config = kwargs.get("generation_config") or self.generation_config
        for name in ("pad_token_id", "eos_token_id", "decoder_start_token_id"):
            value = kwargs.get(name, getattr(generation_config, name, None))
            ids = [] if value is None else torch.as_tensor(value).flatten().tolist()
            if any(not 0 <= int(i) < self.config.vocab_size for i in ids):
                raise ValueError(
                    f"`{name}`={value} (given to `generate` or in its generation config) is outside the vocabulary "
                    f"[0, {self.config.vocab_size - 1}]: set it to an id of the tokenizer the model was trained with."
                )
        generating = _GENERATING.set(True)
        try:
            return super().generate(*args, **kwargs)
        finally:
            _GENERATING.reset(generating)

    def prepare_inputs_for_generation(self, *args, **kwargs):
        # `generate` runs the encoder once, with the `position_ids` it was given, and keeps them in its kwargs; the
        # decoding steps get the encoder's outputs, to which they no longer apply
        model_inputs = super().prepare_inputs_for_generation(*args, **kwargs)
        if model_inputs.get("encoder_outputs") is not None:
            model_inputs.pop("position_ids", None)
        return model_inputs

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        encoder_outputs=None,
        cache: Cache | None = None,
        inputs_embeds=None,
        decoder_inputs_embeds=None,
        labels=None,
        use_cache: bool | None = None,
        position_ids=None,
        decoder_position_ids=None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> Seq2SeqLMOutput:
        r"""
        labels (`(B, Lt)`, *optional*): target ids; -100 marks positions the loss ignores. When given without
            decoder inputs, the decoder inputs are the labels shifted right (teacher forcing).
        position_ids / decoder_position_ids (`(L,)` or `(B, L)`, *optional*): explicit positions of the encoder /
            decoder tokens, e.g. for packing; default 0, 1, 2, ... (see `LongCtxEncoder.forward`).
        num_items_in_batch (*optional*, in kwargs): the number of target tokens over all gradient-accumulation
            micro-batches, passed by `Trainer`; the loss is then a sum divided by it, so accumulation reports
            the same loss as one big batch.
        """
        check_forward_kwargs(self.forward, kwargs)
        num_items_in_batch = kwargs.pop("num_items_in_batch", None)
        if labels is not None:
            check_inputs(labels, "labels", is_ids=True)
            check_token_ids(self.config, labels.masked_fill(labels == -100, 0), "labels")
            use_cache = False
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
            decoder = decoder_input_ids if decoder_input_ids is not None else decoder_inputs_embeds
            if tuple(decoder.shape[:2]) != tuple(labels.shape[:2]):  # the loss pairs each position with its label
                name = "decoder_input_ids" if decoder_input_ids is not None else "decoder_inputs_embeds"
                raise ValueError(
                    f"`labels` has shape {tuple(labels.shape[:2])} but `{name}` covers {tuple(decoder.shape[:2])} "
                    f"(batch, length): the loss scores position t of the decoder against label t. Give them the same "
                    f"shape, or drop `{name}` (they are then the labels shifted right)."
                )
        outputs = self.model(
            input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            encoder_outputs=encoder_outputs,
            cache=cache,
            inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            position_ids=position_ids,
            decoder_position_ids=decoder_position_ids,
            **kwargs,
        )
        logits_BLtV = self.lm_head(outputs.last_hidden_state * self.config.decoder_output_scale)
        if self.config.final_logits_bias:
            logits_BLtV = logits_BLtV + self.final_logits_bias.to(logits_BLtV.dtype)
        loss = None
        if labels is not None:
            # Cross-entropy of each position against its own label: no causal-LM shift here (T7).
            loss = fixed_cross_entropy(
                logits_BLtV.flatten(0, 1).float(),
                labels.to(logits_BLtV.device).flatten(),
                num_items_in_batch=num_items_in_batch,
                ignore_index=-100,
            )
        return Seq2SeqLMOutput(
            loss=loss,
            logits=logits_BLtV,
            cache=outputs.cache,
            decoder_hidden_states=outputs.decoder_hidden_states,
            decoder_attentions=outputs.decoder_attentions,
            cross_attentions=outputs.cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
            encoder_attentions=outputs.encoder_attentions,
        )


__all__ = ["LongCtxPreTrainedModel", "LongCtxModel", "LongCtxForConditionalGeneration"]
