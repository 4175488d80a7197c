#!/usr/bin/env python
"""One SDPA call at the speed benchmark's training size, forward and backward, with each kind of bias.

    python scripts/profile_attention.py            # (8, 4, 512, 64), fp32, 1 thread, median of 5

Rows: no bias; ALiBi's bias as the model builds it (`alibi_max_penalty` 60) and without the cut (None); a learned
bias that needs its gradient (T5's relative bias in training). What it shows: the uncut ALiBi bias sends far
keys' weights and gradients into subnormal floats, which the CPU processes far slower, and a bias that needs a
gradient moves SDPA off its fused kernel to the math path, which materialises the (B, H, L, L) scores.
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


def time_call(q, k, v, bias, repeats: int) -> tuple[float, float]:
    forward, backward = [], []
    for _ in range(repeats):
        for t in (q, k, v, bias):
            if t is not None:
                t.grad = None
        start = time.perf_counter()
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
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
    print(f"SDPA {shape}, fp32, {args.threads} thread(s), median of {args.repeats}")
    print("| bias | forward ms | backward ms |\n|---|---:|---:|")
    for name, bias in rows.items():
        forward, backward = time_call(q, k, v, bias, args.repeats)
        print(f"| {name} | {forward:.1f} | {backward:.1f} |")


if __name__ == "__main__":
    main()
