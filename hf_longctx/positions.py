"""Position encodings: one small module each, one interface, one registry line each.

Legend: B batch, H heads, L length, Lq/Lk query/key length, D d_model, Dh head dimension.
Positions are integer tensors: by default 1-D and shared by the batch, `arange(L)` in the encoder and
`arange(past, past + L)` in a decoder that continues from a cache; where the caller gives `position_ids` per
example, (B, L), and every output below then has B in place of its leading 1.

Three kinds (torchtune/torchtitan style: the stack builds the encoding once and hands what it computes to layers):
- "additive": `embed(positions) -> (L, D)` (or (B, L, D)) is added to the token embeddings once, before the first
              layer;
- "bias":     `bias(q_positions, k_positions) -> (1 or B, H, Lq, Lk)` is added to the attention scores; a function
              of the positions only, so the long-input path can build it block by block;
- "rotary":   `rotary(positions) -> (cos, sin)`, each `(1 or B, L, rotary_dim)`, rotates q and k (their first `rotary_dim` dimensions) inside the attention.
Deterministic tables are non-persistent buffers that `init_buffers` recomputes (models load on the meta device,
so `_init_weights` must rebuild them; see ARCHITECTURE.md T4).

Every fact about an encoding lives on its class (`kind`, `extrapolates`, `takes_relative_bias`, `description`,
`extension_methods`, ...), and `POSITION_ENCODINGS` maps names to classes; the config's validation, the model
card, `conversion/extend.py` and the tests read both from here. `register_position_encoding(name, cls)` adds an encoding
defined elsewhere, which `LongCtxConfig(position_embedding_type=name)` then accepts.
"""

import dataclasses
import math
from typing import ClassVar

import torch
from torch import nn
from transformers import initialization as init
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.t5.modeling_t5 import T5Attention

from .configuration_longctx import LongCtxConfig

KINDS = ("none", "additive", "bias", "rotary")


class PositionEncoding(nn.Module):
    """Base class. The stack calls `add_to_embeddings`, `rotary_inputs` and, where `adds_score_bias`, `bias`; `kind`
    ("additive", "bias", "rotary" or "none") says which of them does something, and the other class attributes are
    what the rest of the package knows about the encoding."""

    kind: ClassVar[str] = "none"
    description: ClassVar[str] = ""  # one or two sentences for the model card
    extrapolates: ClassVar[bool] = True  # runs on inputs longer than any seen in training
    takes_relative_bias: ClassVar[bool] = True  # `relative_bias` (T5's learned buckets) can go on top of it
    relative_bias_by_default: ClassVar[bool] = False  # ... and is on by default (`relative_bias=None`)
    encoder_conv_kernel_by_default: ClassVar[int] = 0  # `encoder_conv_kernel=None` in an encoder with this encoding
    initializer_by_default: ClassVar[str] = "normal"  # `initializer=None` in a model whose encoder has this encoding
    encoder_allowed: ClassVar[bool] = True  # False: decoder only
    extension_methods: ClassVar[tuple[str, ...]] = ("none",)  # `conversion.extend.extend_context` methods it takes
    options: ClassVar[tuple[str, ...]] = ()  # LongCtxConfig fields only it reads (set without it: a warning)

    def __init__(self, config: LongCtxConfig, causal: bool):
        super().__init__()
        self.causal = causal

    def check_length(self, length: int, side: str) -> None:
        """Raise a ValueError if this encoding cannot represent `length` positions. `side` says where they come
        from: "encoder" (the source), "decoder" (labels or decoder inputs) or "generation" (a decoding step)."""

    def init_buffers(self) -> None:
        """Recompute the deterministic non-persistent buffers (after loading on the meta device)."""

    def init_parameters(self) -> None:
        """Give this encoding's own `nn.Parameter`s their initial values (`_init_weights` calls it for a fresh model
        and for weights a checkpoint lacks; Linear and Embedding submodules are initialised by HF's rules). Write
        with `transformers.initialization`'s functions (`init.copy_`, ...), which leave loaded parameters alone."""

    # What the stack calls, whatever the encoding (each kind overrides its own). `positions` is (L,), shared by the
    # batch, or (B, L) where the caller gave `position_ids` per example; the outputs then carry that batch dimension.
    def add_to_embeddings(self, embeddings: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """The first layer's input from the token embeddings (B, L, D): they are returned unchanged here."""
        return embeddings

    def rotary_inputs(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(cos, sin) by which the attention rotates queries and keys; None: no rotation."""
        return None

    @property
    def adds_score_bias(self) -> bool:
        """Whether `bias(q_positions, k_positions) -> (1 or B, H, Lq, Lk)` goes on the self-attention scores."""
        return self.kind == "bias"

    bias_is_offset_only: ClassVar[bool] = False  # True: the bias is `bias_by_offset(k - q)` (Toeplitz blocks)


def fp32_table(buffer: torch.Tensor, compute) -> torch.Tensor:
    """The fp32 value of a frequency table. `model.to(torch.bfloat16)` casts buffers too, and angles pos * freq
    computed from a bf16 frequency drift in proportion to pos (2.0 off at 16k tokens): recompute instead."""
    if buffer.dtype == torch.float32:
        return buffer
    return compute().to(buffer.device)


class NoPositions(PositionEncoding):
    """No positions at all; only the decoder may use it (its causal mask gives order)."""

    takes_relative_bias = False
    encoder_allowed = False
    extension_methods = ()


class AdditivePositions(PositionEncoding):
    """An "additive" encoding: `embed(positions) -> (L, D)`, or (B, L, D) for positions given per example, is added
    to the token embeddings."""

    kind = "additive"

    def embed(self, positions: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def add_to_embeddings(self, embeddings: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return embeddings + self.embed(positions).to(embeddings.dtype)


class SinusoidalPositions(AdditivePositions):
    """PE(pos, 2i) = sin(pos / 10000^(2i/D)), PE(pos, 2i+1) = cos(pos / 10000^(2i/D)) (Vaswani et al. 2017).

    The angles are computed in float64 and the table returned in float32, as HF's Marian builds its table: fp32
    angles are off by about pos * 2^-24 (3e-5 at 512 positions, 1e-4 at 2048), enough to move the logits of a
    converted checkpoint. No buffer: the D/2 frequencies cost nothing to recompute, and a cast of the model (bf16)
    or loading on the meta device cannot degrade them."""

    options = ("sinusoidal_layout", "sinusoidal_scale")
    description = (
        "Fixed sinusoids PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...) are added to the token "
        "embeddings; no weights, any length runs."
    )

    def __init__(self, config: LongCtxConfig, causal: bool):
        super().__init__(config, causal)
        self.d_model = config.d_model
        self.layout = config.sinusoidal_layout
        self.scale = config.sinusoidal_scale

    def embed(self, positions: torch.Tensor) -> torch.Tensor:
        dtype = torch.float32 if positions.device.type == "mps" else torch.float64  # MPS has no float64
        two_i = torch.arange(0, self.d_model, 2, dtype=dtype, device=positions.device)
        inv_freq_I = 1.0 / (10000.0 ** (two_i / self.d_model))
        angles_LI = positions.to(dtype)[..., None] * inv_freq_I  # (L, I), or (B, L, I) per example
        if self.layout == "halves":  # all sines, then all cosines (Marian, fairseq)
            table_LD = torch.cat((angles_LI.sin(), angles_LI.cos()), dim=-1)
        else:  # sin at 2i, cos at 2i+1
            table_LD = torch.stack((angles_LI.sin(), angles_LI.cos()), dim=-1).flatten(-2)
        return table_LD[..., : self.d_model].float() * self.scale


class LearnedPositions(AdditivePositions):
    """A trained table of `max_position_embeddings` rows; it has nothing to offer past its last row."""

    description = (
        "A learned table of `max_position_embeddings` rows is added to the token embeddings; inputs longer than the "
        "table raise a `ValueError`, and rows past the longest training input were never trained."
    )
    extrapolates = False
    extension_methods = ("copy", "interpolate", "alibi", "relative")

    def __init__(self, config: LongCtxConfig, causal: bool):
        super().__init__(config, causal)
        self.embeddings = nn.Embedding(config.max_position_embeddings, config.d_model)

    def check_length(self, length: int, side: str) -> None:
        table = self.embeddings.num_embeddings
        if length <= table:
            return
        what, fix = {
            "encoder": (
                f"The encoder input (`input_ids`) has {length} tokens",
                f"truncate the source (tokenizer `truncation=True, max_length={table}`)",
            ),
            "decoder": (
                f"The decoder input (`labels` or `decoder_input_ids`) has {length} tokens",
                f"truncate the targets to {table} tokens",
            ),
            "generation": (
                f"Decoding reached output position {length}",
                f"lower `generate`'s `max_new_tokens` (or `max_length`) to keep the output within {table} tokens",
            ),
        }[side]
        raise ValueError(
            f"{what}, but position_embedding_type='learned' has a table of `max_position_embeddings`={table} rows. "
            f"To fix: {fix}, grow the table (scripts/extend_context.py), or use an encoding that extrapolates: "
            f"{', '.join(encoding_names(extrapolates=True, encoder_allowed=True))}."
        )

    def embed(self, positions: torch.Tensor) -> torch.Tensor:
        return self.embeddings(positions)


class OffsetBias(PositionEncoding):
    """A "bias" encoding that depends on the offset k - q only. Subclasses give `bias_by_offset`; `bias` computes
    each distinct offset once (Lq + Lk - 1 of them, not Lq * Lk: for T5 buckets that replaces millions of logs)
    and gathers, and the long-input path builds each block as a strided (Toeplitz) view of the same values."""

    kind = "bias"
    bias_is_offset_only = True

    def bias_by_offset(self, lowest: int, count: int, device: torch.device) -> torch.Tensor:
        """(H, count): the bias of the offsets k - q = lowest, ..., lowest + count - 1."""
        raise NotImplementedError

    def trainable_constant_beyond(self) -> int | None:
        """The distance |k - q| from which the trainable part of `bias_by_offset` is one value on each side (k > q and
        k < q), so that its gradient there is needed only as a sum (`attention.ToeplitzBiasAttention`, the long-input
        path's training); 0 for a bias without weights; None where it varies at every distance (KERPLE's does)."""
        return None if any(p.requires_grad for p in self.parameters()) else 0

    def bias(self, q_positions: torch.Tensor, k_positions: torch.Tensor) -> torch.Tensor:
        """(1, H, Lq, Lk) for positions (L,) shared by the batch; (B, H, Lq, Lk) for positions (B, L) per example."""
        lowest = int(k_positions.min()) - int(q_positions.max())
        count = int(k_positions.max()) - int(q_positions.min()) - lowest + 1
        values_HN = self.bias_by_offset(lowest, count, q_positions.device)
        offsets = k_positions[..., None, :] - q_positions[..., :, None] - lowest  # (Lq, Lk) or (B, Lq, Lk)
        bias = values_HN[:, offsets]
        return bias.unsqueeze(0) if offsets.dim() == 2 else bias.movedim(0, 1)


class RelativePositions(OffsetBias):
    """T5's bucketed relative bias: one learned scalar per (bucket, head), shared by the layers of a stack.

    Buckets (`T5Attention._relative_position_bucket`): half of them exact distances, the rest logarithmic up to
    `relative_attention_max_distance`; bidirectional (signed) in the encoder, causal in the decoder.
    """

    description = (
        "T5 relative position buckets (bidirectional in the encoder, causal in the decoder) give a learned bias per "
        "head and bucket, added to the attention scores; one table per stack, shared by its layers."
    )
    takes_relative_bias = False  # it is that bias
    # measured: `encoder_conv_kernel` and `initializer` in LongCtxConfig's docstring
    encoder_conv_kernel_by_default = 4
    initializer_by_default = "fan_in"
    options = ("relative_attention_num_buckets", "relative_attention_max_distance")

    def __init__(self, config: LongCtxConfig, causal: bool):
        super().__init__(config, causal)
        self.num_buckets = config.relative_attention_num_buckets
        self.max_distance = config.relative_attention_max_distance
        self.relative_attention_bias = nn.Embedding(self.num_buckets, config.num_heads)
        self.relative_attention_bias.fan_in_std = config.d_model**-0.5  # `initializer="fan_in"`, as T5

    def bias_by_offset(self, lowest: int, count: int, device: torch.device) -> torch.Tensor:
        buckets_N = T5Attention._relative_position_bucket(
            torch.arange(lowest, lowest + count, device=device),  # memory position - query position, as T5
            bidirectional=not self.causal,
            num_buckets=self.num_buckets,
            max_distance=self.max_distance,
        )
        return self.relative_attention_bias(buckets_N).T

    def trainable_constant_beyond(self) -> int:
        return self.max_distance  # T5's buckets: every distance from max_distance on is the last bucket of its side


class CrossAttentionAlignment(nn.Module):
    """`cross_attention_alignment`: a learned bias on the cross-attention scores of the offset of source position j
    from decoder position t along each head's diagonal, j - t for the first ceil(H / 2) heads (the output follows
    the source), (n - 1 - j) - t for the others (it follows the source backwards), with n each example's unpadded
    source length and j counted over its unpadded tokens (so left and right padding give the same bias). T5's
    bidirectional buckets up to `cross_attention_alignment_max_distance`; one table per decoder, shared by its
    layers."""

    def __init__(self, config: LongCtxConfig):
        super().__init__()
        self.num_buckets = config.relative_attention_num_buckets
        self.max_distance = config.cross_attention_alignment_max_distance
        self.forward_heads = (config.num_heads + 1) // 2
        self.weight = nn.Parameter(torch.zeros(self.num_buckets, config.num_heads))  # (bucket, head)

    def init_parameters(self) -> None:
        """The first head of each diagonal starts at minus the smallest distance from the diagonal each bucket holds
        (it attends around its diagonal from the first step, e^-|offset|), the other heads at 0 (content heads that
        may learn a diagonal). Measured (`scripts/ablate_trunk.py`, docs/configuration.md): from a zero table copy
        was learned by content and failed at 2x (0.06); with every head on its diagonal passkey took 2000 steps
        where the default takes 750; with one head per diagonal copy and passkey both learn at their usual pace."""
        distances = torch.arange(-self.max_distance - 1, self.max_distance + 2)
        buckets = self._buckets(distances)
        start = torch.zeros(self.num_buckets).scatter_reduce(0, buckets, -distances.abs().float(), "amax", include_self=False)
        heads = self.weight.shape[1]
        on_diagonal = torch.zeros(heads)
        on_diagonal[[0, self.forward_heads % heads]] = 1.0  # the first forward and the first backward head
        init.copy_(self.weight, start[:, None] * on_diagonal[None])

    def _buckets(self, offsets: torch.Tensor) -> torch.Tensor:
        return T5Attention._relative_position_bucket(
            offsets, bidirectional=True, num_buckets=self.num_buckets, max_distance=self.max_distance
        )

    def forward(self, q_positions: torch.Tensor, source_mask: torch.Tensor | None, source_length: int) -> torch.Tensor:
        """(B or 1, H, Lq, Ls) for decoder positions (Lq,) or (B, Lq) and the encoder's (B, Ls) mask (None: no
        padding)."""
        if source_mask is None:
            j, n = torch.arange(source_length, device=q_positions.device)[None], source_length  # (1, Ls), every token
        else:  # (B, Ls): index among the example's unpadded tokens; (B, 1) of them
            j, n = source_mask.long().cumsum(-1) - 1, source_mask.long().sum(-1, keepdim=True)
        t = q_positions[..., :, None]  # (Lq, 1) or (B, Lq, 1)
        biases = []
        for offsets, columns in (
            (j[:, None, :] - t, self.weight[:, : self.forward_heads]),
            ((n - 1 - j)[:, None, :] - t, self.weight[:, self.forward_heads :]),
        ):
            biases.append(columns[self._buckets(offsets)])  # (B, Lq, Ls, heads of this diagonal)
        return torch.cat(biases, -1).permute(0, 3, 1, 2)


def alibi_slopes(num_heads: int) -> list[float]:
    """Head slopes of Press et al. 2022: 2^(-8h/H) for h = 1..H when H is a power of 2; otherwise the slopes of
    the closest smaller power of 2, completed by every other slope of the next power (their reference code)."""

    def power_of_2_slopes(n: int) -> list[float]:
        return [2.0 ** (-8.0 * h / n) for h in range(1, n + 1)]

    if math.log2(num_heads).is_integer():
        return power_of_2_slopes(num_heads)
    closest = 2 ** math.floor(math.log2(num_heads))
    return power_of_2_slopes(closest) + power_of_2_slopes(2 * closest)[0::2][: num_heads - closest]


# What a key past `config.alibi_max_penalty` gets: far enough below it to skip exp()'s subnormal results
# (below -87.3 in fp32), and finite in fp16 too.
ALIBI_CUT_BIAS = -1.0e4


class AlibiPositions(OffsetBias):
    """ALiBi: score(i, j) += -m_h * |i - j|. Symmetric in the encoder; in the decoder the causal mask keeps j <= i,
    where |i - j| = i - j, so the same formula is the causal ALiBi of the paper. No weights.

    Past a penalty of `config.alibi_max_penalty` (distance penalty / m_h) the bias drops to `ALIBI_CUT_BIAS`: with the
    default 60 each head is a window of 60 / m_h tokens (240 to 15,360 tokens for 4 heads), outside of which the
    plain formula gives weights under 9e-27 of the query's own position, and CPU kernels slow down on them
    (the config docstring has the measurement)."""

    description = (
        "ALiBi: a fixed linear penalty -m_h * |i - j| on the attention scores (symmetric in the encoder, causal in "
        "the decoder), slopes m_h = 2^(-8h/H); no weights."
    )
    relative_bias_by_default = True  # measured: `relative_bias` in LongCtxConfig's docstring
    options = ("alibi_max_penalty",)

    def __init__(self, config: LongCtxConfig, causal: bool):
        super().__init__(config, causal)
        self.num_heads = config.num_heads
        self.max_penalty = config.alibi_max_penalty
        self.register_buffer("slopes", torch.tensor(alibi_slopes(self.num_heads)), persistent=False)

    def init_buffers(self) -> None:
        self.slopes.copy_(torch.tensor(alibi_slopes(self.num_heads)))

    def bias_by_offset(self, lowest: int, count: int, device: torch.device) -> torch.Tensor:
        distance_N = torch.arange(lowest, lowest + count, device=device).abs().float()
        bias_HN = -self.slopes.to(device)[:, None] * distance_N
        if self.max_penalty is not None:
            bias_HN.masked_fill_(bias_HN < -self.max_penalty, ALIBI_CUT_BIAS)
        return bias_HN

class LocalWindow(OffsetBias):
    """`encoder_local_radius`: 0 on the scores of keys within the radius, `ALIBI_CUT_BIAS` past it (a weight of
    exp(-1e4): none), as one more score bias of the encoder, so every attention path (dense, long-input blocks, the
    fused Toeplitz training call) masks the same keys. Not a registered encoding: it goes on top of one."""

    def __init__(self, config: LongCtxConfig, causal: bool):
        super().__init__(config, causal)
        self.radius = config.encoder_local_radius
        self.num_heads = config.num_heads

    def bias_by_offset(self, lowest: int, count: int, device: torch.device) -> torch.Tensor:
        distance_N = torch.arange(lowest, lowest + count, device=device).abs()
        bias_N = torch.where(distance_N > self.radius, ALIBI_CUT_BIAS, 0.0)
        return bias_N.expand(self.num_heads, count)


class KerplePositions(OffsetBias):
    """KERPLE, logarithmic variant (Chi et al. 2022, arXiv 2205.09921): score(i, j) += -r1_h * log(1 + r2_h * |i - j|),
    r1_h, r2_h > 0 learned per head, one pair per stack shared by its layers. Symmetric in the encoder; in the
    decoder the causal mask keeps j <= i. Positivity by softplus of a free weight (the paper's code clamps the
    weights after each step instead). Starts at r1 = 1 and r2 = ALiBi's slopes, so the heads start with different
    reaches, as ALiBi's do; with r2 small the penalty is about r1 * r2 * |i - j|, ALiBi itself."""

    description = (
        "KERPLE (logarithmic): a learned penalty -r1_h * log(1 + r2_h * |i - j|) on the attention scores, two "
        "positive weights per head and stack (symmetric in the encoder, causal in the decoder); any length runs."
    )

    def __init__(self, config: LongCtxConfig, causal: bool):
        super().__init__(config, causal)
        self.strength = nn.Parameter(torch.empty(config.num_heads))  # r1 = softplus(strength)
        self.rate = nn.Parameter(torch.empty(config.num_heads))  # r2 = softplus(rate)
        self.init_parameters()

    def init_parameters(self) -> None:
        def inverse_softplus(x):
            return x + torch.log(-torch.expm1(-x))

        # HF's guarded copy: a parameter the checkpoint held keeps its loaded value
        init.copy_(self.strength, inverse_softplus(torch.ones(self.strength.shape)))
        init.copy_(self.rate, inverse_softplus(torch.tensor(alibi_slopes(self.rate.numel()))))

    def bias_by_offset(self, lowest: int, count: int, device: torch.device) -> torch.Tensor:
        distance_N = torch.arange(lowest, lowest + count, device=device).abs().float()
        r1_H1, r2_H1 = nn.functional.softplus(self.strength)[:, None], nn.functional.softplus(self.rate)[:, None]
        return -r1_H1 * torch.log1p(r2_H1 * distance_N)


class RotaryPositions(PositionEncoding):
    """RoPE (Su et al. 2021) with HF's scalings for context extension (`transformers.modeling_rope_utils`):
    linear = position interpolation (Chen et al. 2023), dynamic = NTK-aware base growth past the trained length,
    yarn = Peng et al. 2023. `rope_parameters` is the same dict HF's decoder-only models take.

    As in HF, `dynamic` treats `max_position_embeddings` as the trained length and `yarn` reads
    `rope_parameters["original_max_position_embeddings"]` (default `max_position_embeddings`). `dynamic` picks its base from the longest position of the current forward (as HF's decoders do): the encoder
    uses its padded input length, and cached decoding past the trained length differs from one full forward,
    since each step re-picks the base. Within the trained length it is exactly the default RoPE."""

    kind = "rotary"
    description = (
        "Rotary position embeddings rotate queries and keys by their positions (the scaling in `rope_parameters`: "
        "default, linear/PI, dynamic NTK or YaRN); no weights."
    )
    extension_methods = ("linear", "dynamic", "yarn")
    # measured: `initializer` and `encoder_conv_kernel` in LongCtxConfig's docstring (RoPE learned no multi-key
    # matching at lr 1e-3 without both)
    encoder_conv_kernel_by_default = 4
    initializer_by_default = "fan_in"

    def __init__(self, config: LongCtxConfig, causal: bool):
        super().__init__(config, causal)
        # `from_pretrained(folder, rope_parameters={...})` sets the dict after the config filled its defaults
        config.rope_parameters = {"rope_type": "default", "rope_theta": 10000.0, **config.rope_parameters}
        self.config = config
        self.rope_type = config.rope_parameters["rope_type"]
        inv_freq, self.attention_scaling = self._compute(seq_len=None)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def _compute(self, seq_len: int | None) -> tuple[torch.Tensor, float]:
        if self.rope_type == "default":  # HF 5 keeps the plain frequencies in each model, not in the registry
            dim, theta = self.config.rotary_dim, self.config.rope_parameters["rope_theta"]
            return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim)), 1.0
        # linear, yarn, and dynamic NTK (whose base grows once seq_len passes `max_position_embeddings`)
        return ROPE_INIT_FUNCTIONS[self.rope_type](self.config, None, seq_len=seq_len)

    def init_buffers(self) -> None:
        self.inv_freq.copy_(self._compute(seq_len=None)[0])

    def rotary_inputs(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        return tuple(t.to(dtype) for t in self.rotary(positions))

    def rotary(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.rope_type == "dynamic":  # the base grows with the current length once it passes the trained one
            inv_freq = self._compute(seq_len=int(positions.max()) + 1)[0].to(positions.device)
        else:
            inv_freq = fp32_table(self.inv_freq, lambda: self._compute(seq_len=None)[0])
        angles_LI = positions.float()[..., None] * inv_freq  # (L, I), or (B, L, I) per example
        angles_LDh = torch.cat((angles_LI, angles_LI), dim=-1)  # HF's rotate_half layout
        cos, sin = angles_LDh.cos() * self.attention_scaling, angles_LDh.sin() * self.attention_scaling
        return (cos[None], sin[None]) if positions.dim() == 1 else (cos, sin)  # (1 or B, L, rotary_dim)


POSITION_ENCODINGS: dict[str, type[PositionEncoding]] = {
    "sinusoidal": SinusoidalPositions,
    "learned": LearnedPositions,
    "relative": RelativePositions,
    "alibi": AlibiPositions,
    "rope": RotaryPositions,
    "kerple": KerplePositions,
    "none": NoPositions,
}


def register_position_encoding(name: str, cls: type[PositionEncoding]) -> None:
    """Make `cls` usable as `LongCtxConfig(position_embedding_type=name)` (and `decoder_position_embedding_type`).

    `cls` subclasses `PositionEncoding`, or better the base of its kind: `AdditivePositions` (implement `embed`),
    `OffsetBias` (implement `bias_by_offset`; the long-input path then serves it block by block) or
    `RotaryPositions`; its other class attributes say how the package treats it. Registration lives in this process: a model saved with
    an outside encoding loads where the same registration has run first, not through remote code alone."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"`name` must be a non-empty string, got {name!r}.")
    if name in POSITION_ENCODINGS:
        raise ValueError(f"position encoding {name!r} is registered already ({POSITION_ENCODINGS[name].__name__}).")
    if not (isinstance(cls, type) and issubclass(cls, PositionEncoding)):
        raise TypeError(f"`cls` must be a subclass of hf_longctx.positions.PositionEncoding, got {cls!r}.")
    if cls.kind not in KINDS:
        raise ValueError(f"{cls.__name__}.kind={cls.kind!r} is not one of {', '.join(KINDS)}.")
    needs = {"additive": "add_to_embeddings", "rotary": "rotary_inputs", "bias": "bias"}.get(cls.kind)
    if needs and getattr(cls, needs, None) is getattr(PositionEncoding, needs, None):
        base = {"additive": "AdditivePositions", "rotary": "RotaryPositions", "bias": "OffsetBias"}[cls.kind]
        raise TypeError(f"{cls.__name__} has kind={cls.kind!r} but no `{needs}`: subclass {base} (or implement it).")
    for base, method in ((OffsetBias, "bias_by_offset"), (AdditivePositions, "embed")):  # what these bases leave open
        if issubclass(cls, base) and getattr(cls, method) is getattr(base, method):
            raise TypeError(f"{cls.__name__} subclasses {base.__name__} but does not implement `{method}`.")
    unknown = [option for option in cls.options if option not in {f.name for f in dataclasses.fields(LongCtxConfig)}]
    if unknown:
        raise ValueError(f"{cls.__name__}.options names {', '.join(unknown)}, which are not LongCtxConfig fields.")
    POSITION_ENCODINGS[name] = cls


def encoding_names(**facts) -> tuple[str, ...]:
    """The registered names whose class has every given attribute value, e.g. `encoding_names(kind="bias")`."""
    return tuple(name for name, cls in POSITION_ENCODINGS.items() if all(getattr(cls, k) == v for k, v in facts.items()))


def build_position_encoding(name: str, config: LongCtxConfig, causal: bool) -> PositionEncoding:
    return POSITION_ENCODINGS[name](config, causal=causal)
