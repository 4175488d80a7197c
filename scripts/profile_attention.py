#!/usr/bin/env python
"""One SDPA call at the speed benchmark's training size, forward and backward, with each kind of bias.

    python scripts/profile_attention.py            # (8, 4, 512, 64), fp32, 1 thread, median of 5

Rows: no bias; ALiBi's bias as the model builds it (`alibi_max_penalty` 60) and without the cut (None); a learned
bias that needs its gradient (T5's relative bias in training). What it shows: the uncut ALiBi bias sends far
keys' weights and gradients into subnormal floats, which the CPU processes far slower, and a bias that needs a
gradient moves SDPA off its fused kernel to the math path, which materialises the (B, H, L, L) scores.

Last row, an experiment toward issue 14's "bias encodings train at >= 0.9x the no-bias model": a learned bias of
the offset k - q only (as `relative`'s), forward through SDPA's fused kernel reading it as a Toeplitz view, backward
by hand in blocks of queries, its gradient the sums of the scores' gradient along the view's diagonals
(`OffsetBiasAttention`; `torch.autograd.gradcheck` passes in float64, `--check`). Measured with
`python scripts/profile_attention.py --check --batch 2 --length 2048 --repeats 3`, 1 thread, on the shared 2-core
machine with two other jobs (commit 7d499c4 + this script), forward + backward ms: 330 + 1912 against 998 + 1612
for SDPA's math path and 358 + 919 without a bias: the forward is the fused kernel's, but the hand-written
backward (the five matmuls of a fused one, plus the softmax, the gradient and the diagonal sums as separate passes
over each block's scores) is slower than the math path's, and the model's blocks already run that path. So the model
keeps its blocks; in PyTorch ops this does not close the gap, a fused
kernel would (on CUDA, FlexAttention's `score_mod` with a table whose gradient flows).
"""

import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import HfArgumentParser

from hf_longctx import LongCtxConfig
from hf_longctx.positions import AlibiPositions


@dataclass
class Arguments:
    batch: int = 8
    heads: int = 4
    length: int = 512
    head_dim: int = 64
    repeats: int = 5
    threads: int = 1
    check: bool = False  # gradcheck the hand-written backward (float64, tiny) before timing


def _anti_diagonal_sums(m_HCK: torch.Tensor) -> torch.Tensor:
    """(H, C, K) -> (H, C + K - 1): entry i sums m[h, r, j] over r + j = i (each row shifted by its index)."""
    heads, rows, keys = m_HCK.shape
    shifted = F.pad(m_HCK, (0, rows)).reshape(heads, rows * (keys + rows))[:, : rows * (keys + rows - 1)]
    return shifted.reshape(heads, rows, keys + rows - 1).sum(1)


class OffsetBiasAttention(torch.autograd.Function):
    """Attention with a bias of the offset k - q that needs its gradient (`relative`, `relative_bias` in training),
    in O(L) memory: with the queries reversed (r = Lq - 1 - query) the bias is bias[r, j] = offsets[:, key_start + r
    + j], the Toeplitz view `_toeplitz_block_bias` makes. Forward: SDPA's fused kernel reads the view (a mask that
    requires grad would send SDPA to its math path, so the view is of the detached values); backward: by hand in
    blocks of `block_rows` queries, the offsets' gradient the sums of the scores' gradient along the view's diagonals.
    An experiment, not the model's path (see the module docstring for what it measured)."""

    @staticmethod
    def forward(ctx, query, key, value, offsets_HN, scale, block_rows, key_start):
        q_len, k_len = query.shape[2], key.shape[2]
        view = _offset_view(offsets_HN.detach(), q_len, k_len, key_start)
        with torch.no_grad():
            reversed_output = F.scaled_dot_product_attention(query.flip(2), key, value, attn_mask=view, scale=scale)
        ctx.save_for_backward(query, key, value, offsets_HN, reversed_output)
        ctx.scale, ctx.block_rows, ctx.key_start = scale, block_rows, key_start
        return reversed_output.flip(2)

    @staticmethod
    def backward(ctx, grad_output):
        query, key, value, offsets_HN, out_r = ctx.saved_tensors
        scale, k_len = ctx.scale, key.shape[2]
        q_r, do_r = query.flip(2), grad_output.flip(2)
        delta = (do_r * out_r).sum(-1, keepdim=True)
        dq_r, dk, dv = torch.empty_like(q_r), torch.zeros_like(key), torch.zeros_like(value)
        d_offsets = torch.zeros_like(offsets_HN)
        view = _offset_view(offsets_HN.detach(), query.shape[2], k_len, ctx.key_start)
        for start in range(0, query.shape[2], ctx.block_rows):
            rows = slice(start, start + ctx.block_rows)
            scores = torch.matmul(q_r[:, :, rows], key.transpose(2, 3)).mul_(scale).add_(view[:, :, rows])
            probs = torch.softmax(scores, -1, dtype=torch.float32).to(scores.dtype)
            dv += torch.matmul(probs.transpose(2, 3), do_r[:, :, rows])
            d_scores = torch.matmul(do_r[:, :, rows], value.transpose(2, 3)).sub_(delta[:, :, rows]).mul_(probs)
            dq_r[:, :, rows] = torch.matmul(d_scores, key) * scale
            dk += torch.matmul(d_scores.transpose(2, 3), q_r[:, :, rows]) * scale
            first = ctx.key_start + start
            d_offsets[:, first : first + d_scores.shape[2] + k_len - 1] += _anti_diagonal_sums(d_scores.sum(0))
        return dq_r.flip(2), dk, dv, d_offsets, None, None, None


def _offset_view(offsets_HN: torch.Tensor, q_len: int, k_len: int, key_start: int = 0) -> torch.Tensor:
    """(1, H, Lq, Lk) view of the offsets with the queries reversed: entry (r, j) = offsets[:, key_start + r + j]."""
    offsets_HN = offsets_HN.contiguous()
    heads, count = offsets_HN.shape
    return offsets_HN.as_strided((1, heads, q_len, k_len), (count * heads, count, 1, 1), offsets_HN.storage_offset() + key_start)


def time_call(q, k, v, bias, repeats: int, attend=None) -> tuple[float, float]:
    """Median ms of forward and backward of `attend(q, k, v, bias)` (default: SDPA with `bias` as its mask)."""
    attend = attend or (lambda q, k, v, bias: F.scaled_dot_product_attention(q, k, v, attn_mask=bias))
    forward, backward = [], []
    for _ in range(repeats):
        for t in (q, k, v, bias):
            if t is not None:
                t.grad = None
        start = time.perf_counter()
        out = attend(q, k, v, bias)
        middle = time.perf_counter()
        out.sum().backward()
        forward.append(middle - start)
        backward.append(time.perf_counter() - middle)
    return statistics.median(forward) * 1e3, statistics.median(backward) * 1e3


def main():
    (args,) = HfArgumentParser(Arguments).parse_args_into_dataclasses()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape = (args.batch, args.heads, args.length, args.head_dim)
    q, k, v = (torch.randn(shape, requires_grad=True) for _ in range(3))
    positions = torch.arange(args.length)

    def alibi(max_penalty):
        config = LongCtxConfig(d_model=args.heads * args.head_dim, num_heads=args.heads, alibi_max_penalty=max_penalty)
        return AlibiPositions(config, causal=False).bias(positions, positions)

    rows = {
        "no bias": None,
        "alibi (alibi_max_penalty=60)": alibi(60.0),
        "alibi (alibi_max_penalty=None)": alibi(None),
        "learned bias with gradient": (0.02 * torch.randn(1, args.heads, args.length, args.length)).requires_grad_(),
    }
    if args.check:
        tiny = [torch.randn(2, 3, 11, 8, dtype=torch.float64, requires_grad=True) for _ in range(3)]
        tiny.append(torch.randn(3, 21, dtype=torch.float64, requires_grad=True))
        assert torch.autograd.gradcheck(lambda *t: OffsetBiasAttention.apply(*t, 0.3, 4, 0), tiny)
        print("gradcheck of OffsetBiasAttention: passed")
    print(f"SDPA {shape}, fp32, {args.threads} thread(s), median of {args.repeats}")
    print("| bias | forward ms | backward ms |\n|---|---:|---:|")
    for name, bias in rows.items():
        forward, backward = time_call(q, k, v, bias, args.repeats)
        print(f"| {name} | {forward:.1f} | {backward:.1f} |")
    offsets = (0.02 * torch.randn(args.heads, 2 * args.length - 1)).requires_grad_()
    block_rows = max(1, 2**24 // (args.batch * args.heads * args.length))
    forward, backward = time_call(
        q, k, v, offsets, args.repeats, lambda q, k, v, o: OffsetBiasAttention.apply(q, k, v, o, args.head_dim**-0.5, block_rows, 0)
    )
    print(f"| offset bias with gradient, fused forward + blockwise backward (prototype) | {forward:.1f} | {backward:.1f} |")


if __name__ == "__main__":
    main()
