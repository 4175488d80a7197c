"""Multi-head attention and its backends.

Legend: B batch, H heads, Lq/Lk query/key length, C queries per block, Dh head dimension.

Backends come from transformers' attention interface (`ALL_ATTENTION_FUNCTIONS`: `sdpa`, `flex_attention`, ...,
with `eager_attention_forward` below as the fallback). A bias encoding passes its scores as the `position_bias`
keyword, which HF's sdpa and flex functions take; it is never merged into the padding mask upstream.

For long inputs the bias encodings take `chunked_attention_forward` instead (Rabe & Staats 2021,
arXiv 2112.05682), registered in the same interface as `CHUNKED_ATTENTION`: queries are cut into blocks of C rows,
each block builds its own (B, H, C, Lk) bias and mask from a `ChunkedAttentionPlan`, attends with SDPA, and is
checkpointed, so memory grows with C * Lk rather than Lq * Lk. The stack decides, once per forward, whether its
self-attention takes that path (`LongCtxStack._use_chunked`) and hands the layers the plan instead of a dense bias.
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers.cache_utils import Cache, EncoderDecoderCache
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface
from transformers.models.gpt_neox.modeling_gpt_neox import apply_rotary_pos_emb as apply_partial_rotary_pos_emb
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from .configuration_longctx import LongCtxConfig

# One block of scores holds about this many elements (64 MiB in fp32) when `chunked_attention_block_size` is None.
BLOCK_SCORE_ELEMENTS = 2**24
# Query rows per block of `ToeplitzBiasAttention`'s bias gradient: one flash forward over the smaller side per block.
OFFSET_GRAD_ROWS = 256


CHUNKED_ATTENTION = "longctx_chunked"  # its name in transformers' attention interface


@dataclass
class ChunkedAttentionPlan:
    """What the chunked long-input path needs to build the bias and mask of any block of queries by itself."""

    bias_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (q_positions, k_positions) -> (1 or B, H, C, Lk)
    q_positions: torch.Tensor  # (Lq,), or (B, Lq) given per example
    k_positions: torch.Tensor  # (Lk,), or (B, Lk)
    key_padding_mask: torch.Tensor | None  # (B, Lk) bool, True = attend
    causal: bool
    block_size: int | None = None
    full_mask: torch.Tensor | None = None  # a ready (B, 1, Lq, Lk) mask (e.g. from generate's static cache)
    # For a bias of the offset k - q only over consecutive positions: (H, Lq + Lk - 1) values of the offsets
    # k - q from (first key - last query) up (`positions.OffsetBias.bias_by_offset`), computed once per forward for
    # every layer and block, which then read them as Toeplitz views instead of calling `bias_fn`.
    offset_values: torch.Tensor | None = None
    # The causal mask is by token order, not by position (positions given explicitly need not increase): the first
    # query is key number `first_query_index` (the cache length), query i of a block sees keys up to its own.
    first_query_index: int = 0
    # (left, right): indices of `offset_values` at and below `left` and at and above `right` where the bias's trainable
    # part is one value per side (T5's buckets past their max distance), so its gradient is needed there only as a
    # sum, which `ToeplitzBiasAttention` gets from the fused backward; None: it is needed at every offset (blocks).
    constant_offsets: tuple[int, int] | None = None
    @cached_property
    def key_ranges(self) -> list[tuple[int, int]] | None:
        """Non-causal, padded, on CPU (where it was measured): each row's attended keys as one range (first, end),
        where the padding leaves them contiguous (right or left padding) and every row has one, so each row can
        attend its own keys; else None. Read on the host once per forward, and only by the paths that use it."""
        padding = self.key_padding_mask
        if padding is None or self.causal or padding.device.type != "cpu":
            return None
        return contiguous_key_ranges(padding)


def contiguous_key_ranges(key_padding_BK: torch.Tensor) -> list[tuple[int, int]] | None:
    """[(first, end)] per row where each row's attended keys (True) are one non-empty run, e.g. right or left
    padding; None otherwise (host reads: `ChunkedAttentionPlan.key_ranges` caches it for every layer)."""
    counts = key_padding_BK.sum(-1)
    first = key_padding_BK.int().argmax(-1)
    keys = torch.arange(key_padding_BK.shape[-1], device=key_padding_BK.device)
    runs = (keys >= first[:, None]) & (keys < (first + counts)[:, None])
    if not bool((counts > 0).all()) or not torch.equal(runs, key_padding_BK):
        return None
    return list(zip(first.tolist(), (first + counts).tolist(), strict=True))


def _toeplitz_block_bias(
    offset_values_HN: torch.Tensor, start: int, rows: int, q_len: int, k_len: int, dtype: torch.dtype
) -> torch.Tensor:
    """The (1, H, rows, Lk) bias of queries start + rows - 1 down to start (reversed), as a view of the offsets
    cast to `dtype` (the query's: under autocast SDPA would otherwise cast, and so copy, the whole view).

    With the queries reversed, entry (r, j) has offset k - q = lowest + (q_len - start - rows) + r + j, so the
    matrix is a window sliding over the offset values: strides (1, 1), no copy. Gathering the matrix instead cost
    more than the attention itself (relative, 4k tokens: 62 ms of index + 30 ms of offset arithmetic per block
    against 44 ms of flash attention); SDPA reads the view directly (41 ms against 35 ms with no bias at all).
    """
    offset_values_HN = offset_values_HN.to(dtype).contiguous()
    heads, count = offset_values_HN.shape
    return offset_values_HN.as_strided(
        (1, heads, rows, k_len),
        (heads * count, count, 1, 1),
        offset_values_HN.storage_offset() + q_len - start - rows,
    )


class ToeplitzBiasAttention(torch.autograd.Function):
    """SDPA over reversed queries with a Hankel view of the offset values as the bias, and the gradient of those
    values, on CPU, in O(L) memory: what training a learned offset bias at long lengths needs (`relative`, and
    `relative_bias`: ALiBi's default).

    Inputs as `_attend_block`'s one call gives them to SDPA: `query_BHRDh` with its rows reversed, and the bias of
    row r, key j = `offsets_HN[:, base + r + j]`. The forward and the q/k/v gradients are PyTorch's fused CPU flash
    kernel (no (L, L) tensor); SDPA itself would take its math path for a bias that needs a gradient (and the
    blocks did: 0.54x the no-bias model's training at 4k tokens). The bias gradient is the score gradient dS summed
    along each anti-diagonal r + j. It is computed exactly only where the trainable part of the bias varies, the
    band |k - q| < W (`constant_offsets`): past it (T5's last bucket on each side) only a sum per side is needed.
    For each block of `OFFSET_GRAD_ROWS` rows, a row of dS sums to 0 (softmax), so with the band's row sums known
    the smaller side's sums come from a flash forward over that side's keys alone (its softmax mass exp(lse_side -
    lse) times dO . O_side - dO . O) and the larger side's are minus the rest. So the band costs O(L * W), the sides
    at most half a forward pass, and the q/k/v gradients one plain fused backward. The gradient of an offset
    past the band is put on the band's edge (`constant_offsets`), which is what a parameter shared by those offsets
    receives; `offsets_HN`'s own gradient there is not per offset.
    """

    @staticmethod
    def forward(ctx, query_BHRDh, key_BHKDh, value_BHKDh, offsets_HN, base, constant_offsets, scale):
        rows, keys = query_BHRDh.shape[2], key_BHKDh.shape[2]
        bias = _toeplitz_block_bias(offsets_HN.detach(), 0, rows, rows + base, keys, query_BHRDh.dtype)
        output, logsumexp = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            query_BHRDh, key_BHKDh, value_BHKDh, 0.0, False, attn_mask=bias, scale=scale
        )
        ctx.save_for_backward(query_BHRDh, key_BHKDh, value_BHKDh, offsets_HN, output, logsumexp)
        ctx.base, ctx.constant_offsets, ctx.scale = base, constant_offsets, scale
        return output

    @staticmethod
    def backward(ctx, grad_BHRDh):
        query, key, value, offsets_HN, output, logsumexp = ctx.saved_tensors
        base, (left, right), scale = ctx.base, ctx.constant_offsets, ctx.scale
        batch, heads, rows, head_dim = query.shape
        keys, count = key.shape[2], offsets_HN.shape[1]
        grad_BHRDh = grad_BHRDh.contiguous()
        bias = _toeplitz_block_bias(offsets_HN.detach(), 0, rows, rows + base, keys, query.dtype)
        grad_q, grad_k, grad_v = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
            grad_BHRDh, query, key, value, output, logsumexp, 0.0, False, attn_mask=bias, scale=scale
        )
        if not ctx.needs_input_grad[3]:
            return grad_q, grad_k, grad_v, None, None, None, None

        grad_offsets_HN = torch.zeros(heads, count, dtype=torch.float32, device=query.device)
        rowsum_BHR = (grad_BHRDh.float() * output.float()).sum(-1)  # D = dO . O, so dS = P * (dO v^T - D)
        for first in range(0, rows, OFFSET_GRAD_ROWS):
            last = min(rows, first + OFFSET_GRAD_ROWS) - 1
            # keys whose offset is past the band for every row of the block: index base + r + j >= right (or <= left)
            band_end = min(max(right - base - first, 0), keys)
            band_start = min(max(left - base - last + 1, 0), band_end)
            # each row's dS sums to 0 (softmax), so of the three parts of a row (left of the band, the band, right
            # of it) the band is computed exactly and the smaller side from a flash forward over its keys alone
            band_sums_BHR = grad_BHRDh.new_zeros(batch, heads, last + 1 - first, dtype=torch.float32)
            width = band_end - band_start
            if width:
                k_BHwDh = key[:, :, band_start:band_end].float()
                v_BHwDh = value[:, :, band_start:band_end].float()
                chunk = max(1, BLOCK_SCORE_ELEMENTS // (batch * heads * width))  # rows at a time: memory O(L)
                for top in range(first, last + 1, chunk):
                    n = min(last + 1, top + chunk) - top
                    scores = torch.matmul(query[:, :, top : top + n].float() * scale, k_BHwDh.transpose(2, 3))
                    scores += _toeplitz_block_bias(offsets_HN.detach().float(), 0, n, n + base + top + band_start, width, torch.float32)
                    probs = scores.sub_(logsumexp[:, :, top : top + n, None].float()).exp_()
                    grad_scores = torch.matmul(grad_BHRDh[:, :, top : top + n].float(), v_BHwDh.transpose(2, 3))
                    grad_scores.sub_(rowsum_BHR[:, :, top : top + n, None]).mul_(probs)
                    band_sums_BHR[:, :, top - first : top - first + n] = grad_scores.sum(-1)
                    # anti-diagonal sums: row r of a zero (H, n, width + n) buffer holds dS's row r shifted right by r
                    skewed = grad_scores.new_zeros(heads, n, width + n)
                    skewed.as_strided((heads, n, width), (n * (width + n), width + n + 1, 1)).copy_(grad_scores.sum(0))
                    start = base + top + band_start
                    grad_offsets_HN[:, start : start + width + n - 1] += skewed.sum(1)[:, : width + n - 1]
            if band_start == 0 and band_end == keys:
                continue
            # a side's sum of dS on row r: P's mass there times (dO . O_side - D), from the side's own softmax
            # (output O_side, logsumexp) rescaled by exp(lse_side - lse); fully masked rows give nothing
            right_side = keys - band_end <= band_start
            side = slice(band_end, keys) if right_side else slice(0, band_start)
            if side.start == side.stop:
                side_sums_BHR = band_sums_BHR.new_zeros(())
            else:
                side_out, side_lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                    query[:, :, first : last + 1], key[:, :, side], value[:, :, side], 0.0, False,
                    attn_mask=bias[:, :, first : last + 1, side], scale=scale,
                )  # fmt: skip
                mass_BHR = (side_lse.float() - logsumexp[:, :, first : last + 1].float()).exp()
                dot_BHR = (grad_BHRDh[:, :, first : last + 1].float() * side_out.float()).sum(-1)
                side_sums_BHR = torch.where(mass_BHR > 0, mass_BHR * (dot_BHR - rowsum_BHR[:, :, first : last + 1]), 0.0)
            other_sums_BHR = -(band_sums_BHR + side_sums_BHR)
            if not right_side:
                side_sums_BHR, other_sums_BHR = other_sums_BHR, side_sums_BHR
            if band_end < keys:
                grad_offsets_HN[:, min(max(right, 0), count - 1)] += side_sums_BHR.sum((0, 2))
            if band_start > 0:
                grad_offsets_HN[:, min(max(left, 0), count - 1)] += other_sums_BHR.sum((0, 2))
        return grad_q, grad_k, grad_v, grad_offsets_HN.to(offsets_HN.dtype), None, None, None


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    position_bias: torch.Tensor | None = None,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T * scaling + bias + mask) v, written out; returns the attention weights too."""
    scores_BHLqLk = torch.matmul(query, key.transpose(2, 3)) * scaling
    if position_bias is not None:
        scores_BHLqLk = scores_BHLqLk + position_bias
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores_BHLqLk = scores_BHLqLk.masked_fill(~attention_mask, torch.finfo(scores_BHLqLk.dtype).min)
        else:  # an additive mask that already holds finfo.min: adding a bias must not overflow it to -inf
            scores_BHLqLk = (scores_BHLqLk + attention_mask).clamp(min=torch.finfo(scores_BHLqLk.dtype).min)
    weights = F.softmax(scores_BHLqLk, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = F.dropout(weights, p=dropout, training=module.training)
    output_BLqHDh = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return output_BLqHDh, weights


def _attend_block(
    query_BHCDh: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    q_positions: torch.Tensor,
    plan: ChunkedAttentionPlan,
    scaling: float,
    dropout: float,
    block_mask: torch.Tensor | None = None,
    start: int = 0,
) -> torch.Tensor:
    if plan.offset_values is not None:
        rows, k_len = query_BHCDh.shape[2], key.shape[2]
        reversed_bias = _toeplitz_block_bias(
            plan.offset_values, start, rows, len(plan.q_positions), k_len, query_BHCDh.dtype
        )
        by_rows = plan.key_ranges is not None
        if block_mask is None and not plan.causal and (plan.key_padding_mask is None or by_rows):
            # the view is the whole mask; padded (varlen style), each row attends its own key range with the view's
            # columns of it (still a view), where masking the padding would copy the bias (~3x the unpadded time at
            # 4k tokens without a gradient, 1.4x with one)
            pieces = [(slice(None), slice(None))]  # (rows, keys)
            if by_rows:
                pieces = [(slice(row, row + 1), slice(*keys)) for row, keys in enumerate(plan.key_ranges)]
            if plan.constant_offsets is not None and torch.is_grad_enabled() and plan.offset_values.requires_grad:
                base = len(plan.q_positions) - start - rows
                reversed_outputs = [
                    ToeplitzBiasAttention.apply(
                        query_BHCDh[batch_rows].flip(2),
                        key[batch_rows, :, keys],
                        value[batch_rows, :, keys],
                        plan.offset_values,
                        base + (keys.start or 0),
                        plan.constant_offsets,
                        query_BHCDh.shape[-1] ** -0.5 if scaling is None else scaling,
                    )
                    for batch_rows, keys in pieces
                ]
                return torch.cat(reversed_outputs).flip(2)
            reversed_outputs = [
                F.scaled_dot_product_attention(
                    query_BHCDh[batch_rows].flip(2),
                    key[batch_rows, :, keys],
                    value[batch_rows, :, keys],
                    attn_mask=reversed_bias[..., keys],
                    dropout_p=dropout,
                    scale=scaling,
                )
                for batch_rows, keys in pieces
            ]
            return torch.cat(reversed_outputs).flip(2)
        bias_BHCLk = reversed_bias.flip(2)  # back in query order: a copy, as applying the masks below makes one
    else:
        bias_BHCLk = plan.bias_fn(q_positions, plan.k_positions).to(query_BHCDh.dtype)
    lowest = torch.finfo(bias_BHCLk.dtype).min
    allowed = None
    if plan.key_padding_mask is not None:
        allowed = plan.key_padding_mask[:, None, None, :]
    if plan.causal:
        rows, k_len = query_BHCDh.shape[2], key.shape[2]
        first = plan.first_query_index + start
        # `first` may be a 0-d tensor (a static cache's length): added to an arange, so torch.compile traces it
        causal_CLk = torch.arange(k_len, device=key.device) <= (torch.arange(rows, device=key.device) + first)[:, None]
        allowed = causal_CLk if allowed is None else allowed & causal_CLk
    if block_mask is not None:
        if block_mask.dtype == torch.bool:
            allowed = block_mask if allowed is None else allowed & block_mask
        else:  # an additive mask
            bias_BHCLk = (bias_BHCLk + block_mask).clamp(min=lowest)
    if allowed is not None:  # one finfo.min plane, never added to another (fully masked rows stay finite)
        bias_BHCLk = torch.where(allowed, bias_BHCLk, lowest)
    return F.scaled_dot_product_attention(
        query_BHCDh, key, value, attn_mask=bias_BHCLk, dropout_p=dropout, scale=scaling
    )


def chunked_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    chunked_plan: ChunkedAttentionPlan | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Query-chunked attention with the bias built per block; memory O(B * H * C * Lk). The mask is the plan's
    (`attention_mask` is None on this path)."""
    if chunked_plan is None:
        raise ValueError(
            f"attn_implementation={CHUNKED_ATTENTION!r} is hf_longctx's long-input path, which its stacks choose by "
            "themselves (`chunked_attention`); set attn_implementation to 'sdpa', 'eager' or 'flex_attention'."
        )
    plan = chunked_plan
    batch, heads, q_len, _ = query.shape
    k_len = key.shape[2]
    nothing_to_mask = plan.key_padding_mask is None and plan.full_mask is None and not plan.causal
    offsets = plan.offset_values
    # The whole bias is a view of Lq + Lk - 1 values per head, and the CPU flash kernel of SDPA reads it without
    # copying (16k tokens: +37 MB peak): one block of every query, not checkpointed (blocks of 128 queries at 32k
    # tokens had cost 1.75x the time of no bias). Smaller blocks remain wherever SDPA would materialise the scores
    # or the mask: a bias that needs its gradient at every offset (`constant_offsets` None; else
    # `ToeplitzBiasAttention` gets it from the fused kernel) or dropout (the math path), and CUDA, whose memory-efficient
    # kernel copies a mask whose row stride is not a multiple of 8 (the view's is 1).
    # A padded batch whose rows' keys are each one range attends row by row, as if unpadded (`_attend_block`)
    single_call = (
        offsets is not None
        and (nothing_to_mask or (plan.full_mask is None and plan.key_ranges is not None))
        and query.device.type == "cpu"
        and dropout == 0.0
        and (plan.constant_offsets is not None or not (torch.is_grad_enabled() and offsets.requires_grad))
    )
    chunk = q_len if single_call else plan.block_size or max(1, BLOCK_SCORE_ELEMENTS // (batch * heads * k_len))
    needs_grad = not single_call and torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value))
    # Blocks are written into one tensor allocated up front: small per-block outputs that outlive their block
    # would pin the allocator's heap between the large per-block temporaries, and RSS would then grow with
    # the number of blocks (measured: +8 MB per block at 16k tokens).
    output_BHLqDh = query.new_empty(query.shape[:-1] + value.shape[-1:])
    for start in range(0, q_len, chunk):
        rows = slice(start, start + chunk)
        block_mask = plan.full_mask[:, :, rows] if plan.full_mask is not None else None
        args = (query[:, :, rows], key, value, plan.q_positions[..., rows], plan, scaling, dropout, block_mask, start)
        if needs_grad:  # recompute the block's scores in backward instead of keeping them
            block = checkpoint(_attend_block, *args, use_reentrant=False)
        else:
            block = _attend_block(*args)
        output_BHLqDh[:, :, start : start + chunk] = block
    return output_BHLqDh.transpose(1, 2).contiguous(), None


AttentionInterface.register(CHUNKED_ATTENTION, chunked_attention_forward)


class LongCtxAttention(nn.Module):
    """Self- or cross-attention. Positions reach it as a dense `position_bias`, a `chunked_plan` (the long-input
    path, which then builds the bias block by block) or rotary `position_embeddings` (cos, sin); cross-attention
    gets at most a dense `position_bias` (`cross_attention_alignment`)."""

    def __init__(self, config: LongCtxConfig, layer_idx: int, is_causal: bool = False):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.is_causal = is_causal
        self.num_heads = config.num_heads
        self.head_dim = config.head_dim
        self.scaling = config.attention_scale if config.attention_scale is not None else self.head_dim**-0.5
        self.dropout = config.attention_dropout
        bias = config.attention_bias
        self.q_proj = nn.Linear(config.d_model, config.d_model, bias=bias)
        self.k_proj = nn.Linear(config.d_model, config.d_model, bias=bias)
        self.v_proj = nn.Linear(config.d_model, config.d_model, bias=bias)
        self.o_proj = nn.Linear(config.d_model, config.d_model, bias=bias)
        # `initializer="fan_in"` (T5): T5 has no 1/sqrt(head_dim) on its scores and draws q from
        # N(0, 1/(d_model * head_dim)) instead; with any score scale s, q ~ N(0, 1/d_model) * head_dim**-0.5 / s
        # starts the scores where T5's start.
        self.q_proj.fan_in_std = config.d_model**-0.5 * self.head_dim**-0.5 / self.scaling

    def _heads(self, states_BLD: torch.Tensor) -> torch.Tensor:
        return states_BLD.view(*states_BLD.shape[:-1], -1, self.head_dim).transpose(1, 2)  # (B, H, L, Dh)

    def forward(
        self,
        hidden_states: torch.Tensor,
        key_value_states: torch.Tensor | None = None,
        cache: Cache | None = None,
        attention_mask: torch.Tensor | None = None,
        position_bias: torch.Tensor | None = None,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        logn_scale: torch.Tensor | None = None,
        chunked_plan: ChunkedAttentionPlan | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        is_cross_attention = key_value_states is not None
        query = self._heads(self.q_proj(hidden_states))
        if logn_scale is not None:  # (B, 1, 1, 1): log-length scaling of the cross-attention
            query = query * logn_scale

        layer_cache, reuse_cross = cache, False
        if isinstance(cache, EncoderDecoderCache):
            reuse_cross = is_cross_attention and cache.is_updated.get(self.layer_idx, False)
            layer_cache = cache.cross_attention_cache if is_cross_attention else cache.self_attention_cache

        if reuse_cross:  # encoder keys/values were projected at the first decoding step
            key = layer_cache.layers[self.layer_idx].keys
            value = layer_cache.layers[self.layer_idx].values
        else:
            source = key_value_states if is_cross_attention else hidden_states
            key, value = self._heads(self.k_proj(source)), self._heads(self.v_proj(source))
            if position_embeddings is not None:
                cos, sin = position_embeddings
                rotate = apply_rotary_pos_emb if cos.shape[-1] == query.shape[-1] else apply_partial_rotary_pos_emb
                query, key = rotate(query, key, cos, sin)
            if layer_cache is not None:
                key, value = layer_cache.update(key, value, self.layer_idx)
                if is_cross_attention and isinstance(cache, EncoderDecoderCache):
                    cache.is_updated[self.layer_idx] = True

        dropout = self.dropout if self.training else 0.0
        implementation = CHUNKED_ATTENTION if chunked_plan is not None else self.config._attn_implementation
        extra = {"chunked_plan": chunked_plan} if chunked_plan is not None else {}
        if position_bias is not None:
            if implementation == "flex_attention":
                position_bias = position_bias.expand(query.shape[0], -1, -1, -1)  # flex indexes bias[batch]
            extra["position_bias"] = position_bias
        attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        output, weights = attention_interface(
            self, query, key, value, attention_mask, dropout=dropout, scaling=self.scaling, **extra, **kwargs
        )
        output = self.o_proj(output.reshape(*hidden_states.shape[:-1], -1))
        return output, weights
