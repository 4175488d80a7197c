"""Profile one training step (forward + backward + AdamW) of hf_longctx at the speed benchmark's size.

    python scripts/profile_step.py --position_embedding_type alibi            # step time + top ops
    python scripts/profile_step.py --position_embedding_type learned --attn_implementation eager

d_model 256, 4+4 layers, 4 heads, d_ff 1024, vocab 8000, source 512, target 128, batch 8, fp32, 1 thread.
Prints the mean step time over `--steps` steps after one warm-up, then torch.profiler's top ops of one step.
"""

import time
from dataclasses import dataclass

import torch
from torch.profiler import ProfilerActivity, profile
from transformers import HfArgumentParser

from hf_longctx import LongCtxConfig, LongCtxForConditionalGeneration


@dataclass
class Arguments:
    position_embedding_type: str = "alibi"
    attn_implementation: str = "sdpa"
    chunked_attention: str = "auto"
    steps: int = 3
    threads: int = 1
    rows: int = 12


def main():
    (args,) = HfArgumentParser(Arguments).parse_args_into_dataclasses()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = LongCtxConfig(
        vocab_size=8000, d_model=256, num_heads=4, d_ff=1024, encoder_layers=4, decoder_layers=4, dropout=0.0,
        position_embedding_type=args.position_embedding_type, chunked_attention=args.chunked_attention,
    )  # fmt: skip
    model = LongCtxForConditionalGeneration(config).train()
    model.set_attn_implementation(args.attn_implementation)
    optimizer = torch.optim.AdamW(model.parameters())
    source, target = torch.randint(2, 8000, (8, 512)), torch.randint(2, 8000, (8, 128))

    def step():
        model(input_ids=source, attention_mask=torch.ones_like(source), labels=target).loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    print(
        f"{args.position_embedding_type} {args.attn_implementation}: {(time.perf_counter() - start) / args.steps:.2f} s/step"
    )
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        step()
    print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
