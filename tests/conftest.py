import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from hf_longctx import LongCtxConfig, LongCtxForConditionalGeneration  # noqa: E402
from hf_longctx.positions import encoding_names  # noqa: E402

if os.environ.get("HF_LONGCTX_TEST_DEVICE"):  # e.g. "cuda": scripts/gpu_check.sh runs the unchanged suite on a GPU
    torch.set_default_device(os.environ["HF_LONGCTX_TEST_DEVICE"])

# Every (encoder, decoder) encoding pair the tests sweep, read from the registry: each encoding in both stacks,
# plus each decoder-only one (no positions) under an ALiBi encoder. A new registry entry is swept by itself.
ENCODINGS = list(encoding_names(encoder_allowed=True))
ENCODING_PAIRS = [(pe, pe) for pe in ENCODINGS] + [("alibi", pe) for pe in encoding_names(encoder_allowed=False)]
BIAS_ENCODINGS = list(encoding_names(kind="bias"))
# alibi carries `relative_bias` (T5's learned buckets on the scores) by default and rope does not; the sweeps above
# test the defaults, these the other choice.
OTHER_SETUPS = {
    "alibi-plain": {"position_embedding_type": "alibi", "relative_bias": False},
    "rope+relative_bias": {"position_embedding_type": "rope", "relative_bias": True},
    "rope+encoder_conv": {"position_embedding_type": "rope", "encoder_conv_kernel": 3},
    "alibi+alignment": {"position_embedding_type": "alibi", "cross_attention_alignment": True},
    "rope+alignment": {"position_embedding_type": "rope", "cross_attention_alignment": True},
    "rope+local_window": {"position_embedding_type": "rope", "encoder_local_radius": 3},  # a window as its only bias
}
# Every way a stack's scores get a bias (what the chunked long-input path serves): T5's buckets alone, ALiBi alone,
# the learned buckets on top of ALiBi and of RoPE, and T5's buckets inside the encoder's local window.
SCORE_BIAS_SETUPS = {
    "relative": {"position_embedding_type": "relative"},
    "alibi-plain": OTHER_SETUPS["alibi-plain"],
    "alibi+relative_bias": {"position_embedding_type": "alibi", "relative_bias": True},
    "rope+relative_bias": OTHER_SETUPS["rope+relative_bias"],
    "relative+local_window": {"position_embedding_type": "relative", "encoder_local_radius": 5},
}
ROPE_SCALINGS = [
    {"rope_type": "linear", "factor": 2.0},
    # dynamic NTK re-picks its base as the sequence grows: cached decoding equals a full forward only within the
    # trained length (see test_dynamic_rope_... for its behaviour beyond)
    {"rope_type": "dynamic", "factor": 2.0},  # max_position_embeddings=64: the cache test stays inside it
    {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 16},
]


def tiny_config(**overrides) -> LongCtxConfig:
    values = dict(
        vocab_size=99,
        d_model=32,
        num_heads=4,
        d_ff=64,
        encoder_layers=2,
        decoder_layers=2,
        dropout=0.0,
        max_position_embeddings=64,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=16,
    )
    values.update(overrides)
    return LongCtxConfig(**values)


def tiny_model(seed: int = 0, attn_implementation: str = "sdpa", **overrides) -> LongCtxForConditionalGeneration:
    torch.manual_seed(seed)
    config = tiny_config(**overrides)
    model = LongCtxForConditionalGeneration(config).eval()
    model.set_attn_implementation(attn_implementation)
    if model.model.decoder.cross_alignment is not None:  # a table each head reads differently
        torch.nn.init.normal_(model.model.decoder.cross_alignment.weight)
    return model


def random_batch(batch=3, src_len=11, tgt_len=7, vocab=99, seed=0, pad_last=True):
    """Ids avoid 0 (pad) and 1 (eos); with pad_last, later rows carry right padding."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(2, vocab, (batch, src_len), generator=g)
    attention_mask = torch.ones_like(input_ids)
    labels = torch.randint(2, vocab, (batch, tgt_len), generator=g)
    if pad_last:
        for row in range(1, batch):
            attention_mask[row, src_len - 2 * row :] = 0
            input_ids[row, src_len - 2 * row :] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def decode_step_by_step(model, batch: dict, decoder_input_ids: torch.Tensor, cache=None):
    """(logits of one cached forward per decoder token, concatenated; the cache): what a full forward must equal."""
    encoder_outputs = model.get_encoder()(batch["input_ids"], attention_mask=batch["attention_mask"])
    steps = []
    for t in range(decoder_input_ids.shape[1]):
        out = model(
            encoder_outputs=encoder_outputs,
            attention_mask=batch["attention_mask"],
            decoder_input_ids=decoder_input_ids[:, t : t + 1],
            cache=cache,
            use_cache=True,
        )
        cache = out.cache
        steps.append(out.logits)
    return torch.cat(steps, dim=1), cache


@pytest.fixture
def batch():
    return random_batch()
