"""Measured parity of every encoding across attention backends, and of cached decoding against a full forward.

    python scripts/parity_report.py            # prints a markdown table (max abs differences, fp32)

Backends: eager (reference), sdpa, the query-chunked path (bias encodings; sdpa with chunked_attention="always"
and 3 queries per block), flex_attention (forward only: no CPU backward; --flex, compiles for tens of seconds).
Tiny model (d_model 32, 4 heads, 2+2 layers), a padded batch of 3, source 11, target 7.
"""

import os
from dataclasses import dataclass

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import HfArgumentParser  # noqa: E402

from hf_longctx import LongCtxConfig, LongCtxForConditionalGeneration  # noqa: E402
from hf_longctx.positions import POSITION_ENCODINGS, encoding_names  # noqa: E402

PAIRS = [(pe, pe) for pe in encoding_names(encoder_allowed=True)] + [
    ("alibi", pe) for pe in encoding_names(encoder_allowed=False)
]


@dataclass
class Arguments:
    flex: bool = False


def build(pair, implementation="sdpa", **extra):
    torch.manual_seed(0)
    config = LongCtxConfig(
        vocab_size=99, d_model=32, num_heads=4, d_ff=64, encoder_layers=2, decoder_layers=2, dropout=0.0,
        max_position_embeddings=64, relative_attention_num_buckets=8, relative_attention_max_distance=16,
        position_embedding_type=pair[0], decoder_position_embedding_type=pair[1], **extra,
    )  # fmt: skip
    model = LongCtxForConditionalGeneration(config).eval()
    model.set_attn_implementation(implementation)
    return model


def batch():
    g = torch.Generator().manual_seed(0)
    input_ids = torch.randint(2, 99, (3, 11), generator=g)
    mask = torch.ones_like(input_ids)
    mask[1, 9:], mask[2, 7:] = 0, 0
    return {"input_ids": input_ids * mask, "attention_mask": mask, "labels": torch.randint(2, 99, (3, 7), generator=g)}


def forward_and_grads(model, inputs, backward=True):
    model.zero_grad()
    out = model(**inputs)
    if not backward:
        return out.logits.detach(), {}
    out.loss.backward()
    return out.logits.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


def max_diff(a, b):
    return (a - b).abs().max().item()


def grads_diff(a, b):
    return max(max_diff(a[n], b[n]) for n in a) if a else float("nan")


def cached_vs_full(model, inputs):
    decoder_input_ids = model.prepare_decoder_input_ids_from_labels(inputs["labels"])
    with torch.no_grad():
        full = model(inputs["input_ids"], attention_mask=inputs["attention_mask"], decoder_input_ids=decoder_input_ids)
        encoder_outputs = model.get_encoder()(inputs["input_ids"], attention_mask=inputs["attention_mask"])
        cache, steps = None, []
        for t in range(decoder_input_ids.shape[1]):
            out = model(
                encoder_outputs=encoder_outputs,
                attention_mask=inputs["attention_mask"],
                decoder_input_ids=decoder_input_ids[:, t : t + 1],
                cache=cache,
                use_cache=True,
            )
            cache = out.cache
            steps.append(out.logits)
    return max_diff(torch.cat(steps, 1), full.logits)


def main():
    (args,) = HfArgumentParser(Arguments).parse_args_into_dataclasses()
    inputs = batch()
    print("| encoder / decoder | backend | logits vs eager | gradients vs eager | cached vs full logits |")
    print("|---|---|---:|---:|---:|")
    for pair in PAIRS:
        name = pair[0] if pair[0] == pair[1] else f"{pair[0]} / {pair[1]}"
        ref_logits, ref_grads = forward_and_grads(build(pair, "eager"), inputs)
        backends = [("eager", {}, True), ("sdpa", {}, True)]
        if any(POSITION_ENCODINGS[pe].kind == "bias" for pe in pair):  # what the long-input path serves
            backends.append(("chunked", {"chunked_attention": "always", "chunked_attention_block_size": 3}, True))
        if args.flex:
            backends.append(("flex_attention", {}, False))
        for backend, extra, backward in backends:
            implementation = "sdpa" if backend == "chunked" else backend
            model = build(pair, implementation, **extra)
            logits, grads = forward_and_grads(model, inputs, backward)
            cached = cached_vs_full(model, inputs) if backend != "flex_attention" else float("nan")
            print(
                f"| {name} | {backend} | {max_diff(logits, ref_logits):.1e} | {grads_diff(grads, ref_grads):.1e} "
                f"| {cached:.1e} |"
            )


if __name__ == "__main__":
    main()
