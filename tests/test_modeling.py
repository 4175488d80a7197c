"""Behaviour of the model: parity between backends, cached decoding, padding, gradients, HF conventions."""

import math

import pytest
import torch
from conftest import (
    BIAS_ENCODINGS,
    ENCODING_PAIRS,
    ENCODINGS,
    OTHER_SETUPS,
    ROPE_SCALINGS,
    SCORE_BIAS_SETUPS,
    decode_step_by_step,
    random_batch,
    tiny_config,
    tiny_model,
)
from transformers import AttentionInterface, AutoConfig, AutoModel, AutoModelForSeq2SeqLM
from transformers import initialization as hf_init
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

import hf_longctx.attention as attention_module
from hf_longctx import POSITION_ENCODINGS, LongCtxForConditionalGeneration, LongCtxModel
from hf_longctx.positions import (
    ALIBI_CUT_BIAS,
    OffsetBias,
    PositionEncoding,
    RelativePositions,
    alibi_slopes,
    register_position_encoding,
)

ATOL = 1e-5


def pair_kwargs(pair):
    return {"position_embedding_type": pair[0], "decoder_position_embedding_type": pair[1]}


def pair_id(pair):
    return pair[0] if pair[0] == pair[1] else f"{pair[0]}+dec-{pair[1]}"


def logits_and_grads(model, batch):
    model.zero_grad()
    out = model(**batch)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.logits.detach(), grads


def assert_same(a, b, atol=ATOL):
    assert a.shape == b.shape
    diff = (a - b).abs().max().item()
    assert diff <= atol, f"max abs diff {diff:.3g} > {atol}"


def test_the_registry_is_where_the_config_reads_its_names():
    for name in POSITION_ENCODINGS:
        field = "position_embedding_type" if POSITION_ENCODINGS[name].encoder_allowed else "decoder_position_embedding_type"
        assert getattr(tiny_config(**{field: name}), field) == name
    with pytest.raises(ValueError, match=r"`position_embedding_type`='no-such-encoding' is not a known .* valid values: " + ", ".join(POSITION_ENCODINGS)):
        tiny_config(position_embedding_type="no-such-encoding")


# ---------------------------------------------------------------- backends agree (forward and gradients)
BACKENDS = [
    ("eager", {}),
    ("sdpa", {}),
    ("sdpa", {"chunked_attention": "always", "chunked_attention_block_size": 3}),  # the memory-efficient path
]


SETUPS = {pair_id(p): pair_kwargs(p) for p in ENCODING_PAIRS} | OTHER_SETUPS


@pytest.mark.parametrize("setup", SETUPS.values(), ids=SETUPS.keys())
def test_backends_agree_forward_and_gradients(setup, batch):
    results = []
    for implementation, extra in BACKENDS:
        model = tiny_model(attn_implementation=implementation, **setup, **extra)
        results.append(logits_and_grads(model, batch))
    (ref_logits, ref_grads), others = results[0], results[1:]
    for logits, grads in others:
        assert_same(logits, ref_logits)
        assert grads.keys() == ref_grads.keys()
        for name in ref_grads:
            assert_same(grads[name], ref_grads[name])


@pytest.mark.parametrize("setup", SCORE_BIAS_SETUPS.values(), ids=SCORE_BIAS_SETUPS.keys())
def test_unmasked_chunked_blocks_take_the_toeplitz_view_and_match_eager(setup, monkeypatch):
    """Without padding the encoder reads the bias as a strided view of its offsets (reversed queries), in one call
    over all queries per layer; a learned bias gets its gradient from `ToeplitzBiasAttention`, not from blocks."""
    calls = []
    original = attention_module.ToeplitzBiasAttention.apply
    monkeypatch.setattr(attention_module.ToeplitzBiasAttention, "apply", lambda *a: calls.append(a) or original(*a))
    unpadded = random_batch(src_len=13, pad_last=False)
    ref_logits, ref_grads = logits_and_grads(tiny_model(attn_implementation="eager", **setup), unpadded)
    chunked = tiny_model(**setup, chunked_attention="always", chunked_attention_block_size=3)
    logits, grads = logits_and_grads(chunked, unpadded)
    layers = chunked.config.encoder_layers
    learned = setup["position_embedding_type"] == "relative" or setup.get("relative_bias")
    assert [a[0].shape[2] for a in calls] == ([13] * layers if learned else []), "one call of all 13 queries"
    assert_same(logits, ref_logits)
    for name in ref_grads:
        assert_same(grads[name], ref_grads[name])


# T5's buckets reach their last bucket at max distance 6, so the long sources below have offsets past it on both
# sides, whose gradient `ToeplitzBiasAttention` takes as a sum per side and query block.
FAR_BUCKETS = {"relative_attention_num_buckets": 4, "relative_attention_max_distance": 6}
LEARNED_BIAS_SETUPS = {name: setup for name, setup in SCORE_BIAS_SETUPS.items() if name != "alibi-plain"}


@pytest.mark.parametrize("setup", LEARNED_BIAS_SETUPS.values(), ids=LEARNED_BIAS_SETUPS.keys())
@pytest.mark.parametrize("padding", ["none", "right", "left"])
@pytest.mark.parametrize("score_elements", [None, 64], ids=["one-chunk", "row-by-row"])
@pytest.mark.parametrize("block_rows", [4, 20])
def test_learned_bias_gradient_past_its_buckets_matches_eager(setup, padding, score_elements, block_rows, monkeypatch):
    """Training a learned offset bias on the long-input path: one fused call per row range and layer, and the same
    logits and gradients as eager's dense scores, with offsets well past the last bucket on both sides (sources of
    up to 45 tokens in gradient blocks of 4 queries, the last one of 1, or of 20, each with keys past the band on
    both sides), padded rows attended by their own key ranges, and the band near the diagonal computed in one chunk
    per block or a row at a time (`BLOCK_SCORE_ELEMENTS`)."""
    if score_elements is not None:
        monkeypatch.setattr(attention_module, "BLOCK_SCORE_ELEMENTS", score_elements)
    monkeypatch.setattr(attention_module, "OFFSET_GRAD_ROWS", block_rows)
    calls = []
    original = attention_module.ToeplitzBiasAttention.apply
    monkeypatch.setattr(attention_module.ToeplitzBiasAttention, "apply", lambda *a: calls.append(a) or original(*a))
    batch = random_batch(src_len=45, pad_last=padding != "none")
    if padding != "none":  # the last row's padded queries see only keys past the band: blocks without one
        batch["attention_mask"][-1, 20:] = 0
    if padding == "left":
        batch["attention_mask"] = batch["attention_mask"].flip(-1)
    ref_logits, ref_grads = logits_and_grads(tiny_model(attn_implementation="eager", **setup, **FAR_BUCKETS), batch)
    model = tiny_model(**setup, **FAR_BUCKETS, chunked_attention="always")
    logits, grads = logits_and_grads(model, batch)
    rows = 1 if padding == "none" else 3
    assert len(calls) == rows * model.config.encoder_layers
    assert_same(logits, ref_logits)
    assert grads.keys() == ref_grads.keys()
    for name in ref_grads:
        assert_same(grads[name], ref_grads[name])


def test_a_bias_that_varies_at_every_distance_takes_the_blocks(monkeypatch):
    """KERPLE's learned penalty has a gradient at every offset (`trainable_constant_beyond` None): blocks, exact."""
    calls = []
    original = attention_module.ToeplitzBiasAttention.apply
    monkeypatch.setattr(attention_module.ToeplitzBiasAttention, "apply", lambda *a: calls.append(a) or original(*a))
    batch = random_batch(src_len=30, pad_last=False)
    ref_logits, ref_grads = logits_and_grads(tiny_model(attn_implementation="eager", position_embedding_type="kerple"), batch)
    logits, grads = logits_and_grads(tiny_model(position_embedding_type="kerple", chunked_attention="always"), batch)
    assert calls == []
    assert_same(logits, ref_logits)
    for name in ref_grads:
        assert_same(grads[name], ref_grads[name])


@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "decoder"])
@pytest.mark.parametrize("name", BIAS_ENCODINGS + ["relative_bias"])
def test_trainable_constant_beyond_is_where_the_bias_gradient_is_one_sum_per_side(name, causal):
    """What `ToeplitzBiasAttention` relies on: moving every offset's gradient past `trainable_constant_beyond` to the
    first offset past it, on its side, leaves the parameters' gradients unchanged."""
    torch.manual_seed(0)
    config = tiny_config(**FAR_BUCKETS, position_embedding_type="alibi" if name == "relative_bias" else name)
    module = (RelativePositions if name == "relative_bias" else POSITION_ENCODINGS[name])(config, causal)
    beyond = module.trainable_constant_beyond()
    params = [p for p in module.parameters() if p.requires_grad]
    if beyond is None:
        assert params, "only a bias with weights may vary at every distance"
        return
    if not params:
        assert beyond == 0
        return
    lowest, count = -40, 81
    weights = torch.randn(module.bias_by_offset(lowest, count, "cpu").shape)
    moved = weights.clone()
    offsets = torch.arange(lowest, lowest + count)
    for side in (1, -1):
        far = offsets * side >= beyond
        moved[:, far] = 0
        moved[:, offsets == side * beyond] = weights[:, far].sum(-1, keepdim=True)
    grads = [torch.autograd.grad((w * module.bias_by_offset(lowest, count, "cpu")).sum(), params) for w in (weights, moved)]
    for exact, summed in zip(*grads, strict=True):
        assert_same(summed, exact)


@pytest.mark.parametrize("setup", SCORE_BIAS_SETUPS.values(), ids=SCORE_BIAS_SETUPS.keys())
def test_padded_chunked_blocks_read_the_offset_values_not_bias_fn(setup, monkeypatch):
    """With padding the encoder's bias comes from the offset values (a view per row, or masked blocks), not bias_fn."""
    model = tiny_model(**setup, chunked_attention="always", chunked_attention_block_size=4)
    gathered = []
    for module in model.model.encoder._score_biases():
        original = type(module).bias
        monkeypatch.setattr(type(module), "bias", lambda *a, original=original: gathered.append(1) or original(*a))
    padded = random_batch(src_len=13)
    with torch.no_grad():
        model.model.encoder(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"])
    assert gathered == [], "the encoder's blocks take their bias from the offset values"
    model.config.chunked_attention = "never"
    with torch.no_grad():
        dense = model.model.encoder(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"])
    model.config.chunked_attention = "always"
    with torch.no_grad():
        chunked = model.model.encoder(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"])
    assert_same(chunked.last_hidden_state, dense.last_hidden_state)


@pytest.mark.parametrize("setup", SCORE_BIAS_SETUPS.values(), ids=SCORE_BIAS_SETUPS.keys())
@pytest.mark.parametrize("padding", ["right", "left", "hole"])
def test_padded_encoder_attends_each_row_by_its_own_keys(setup, padding, monkeypatch):
    """Varlen style: a padded batch (right or left) without a bias gradient makes one view of the offsets per layer
    and attends each row's own key range with it (the masked blocks cost ~3x the unpadded batch); a mask that leaves
    a row's keys in pieces takes the masked blocks. Either way the encoder's output is the dense path's."""
    views = []
    original = attention_module._toeplitz_block_bias
    monkeypatch.setattr(attention_module, "_toeplitz_block_bias", lambda *a: views.append(a[1:3]) or original(*a))
    model = tiny_model(**setup, chunked_attention_block_size=4)
    batch = random_batch(src_len=13)
    mask = batch["attention_mask"]
    if padding == "left":
        mask = mask.flip(-1)
    elif padding == "hole":
        mask[0, 5] = 0
    with torch.no_grad():
        dense = model.model.encoder(input_ids=batch["input_ids"], attention_mask=mask).last_hidden_state
        assert views == []
        model.config.chunked_attention = "always"
        chunked = model.model.encoder(input_ids=batch["input_ids"], attention_mask=mask).last_hidden_state
    layers = model.config.encoder_layers
    if padding == "hole":
        assert views == [(start, 4 if start < 12 else 1) for start in (0, 4, 8, 12)] * layers
    else:
        assert views == [(0, 13)] * layers
    assert_same(chunked, dense)


@pytest.mark.parametrize("setup", SCORE_BIAS_SETUPS.values(), ids=SCORE_BIAS_SETUPS.keys())
@pytest.mark.parametrize("padding", ["right", "hole"])
def test_padded_chunked_training_matches_dense_in_logits_and_gradients(setup, padding):
    """With a gradient (blocks, recomputed in backward), rows attended by their own key ranges or through the mask."""
    batch = random_batch(src_len=13)
    if padding == "hole":
        batch["attention_mask"][0, 5] = 0
    ref_logits, ref_grads = logits_and_grads(tiny_model(**setup).train(), batch)
    logits, grads = logits_and_grads(
        tiny_model(**setup, chunked_attention="always", chunked_attention_block_size=4).train(), batch
    )
    assert_same(logits, ref_logits)
    assert grads.keys() == ref_grads.keys()
    for name in ref_grads:
        assert_same(grads[name], ref_grads[name])


def test_single_call_bias_is_a_small_view_in_the_query_dtype_and_dropout_goes_by_blocks(monkeypatch):
    """The one-call path hands SDPA a view over H x (2L - 1) values in the query's dtype (under autocast too, or
    SDPA would copy the whole matrix); with attention dropout SDPA takes its math path, so blocks are used."""
    views = []
    original = attention_module._toeplitz_block_bias
    monkeypatch.setattr(attention_module, "_toeplitz_block_bias", lambda *a: views.append(original(*a)) or views[-1])
    batch = random_batch(batch=2, src_len=40, pad_last=False)
    model = tiny_model(position_embedding_type="alibi", chunked_attention="always")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(**batch)
    heads, length = model.config.num_heads, 40
    assert views and all(v.shape == (1, heads, length, length) for v in views), "one call over all 40 queries"
    assert all(v.dtype == torch.bfloat16 for v in views)
    assert all(v.untyped_storage().nbytes() == heads * (2 * length - 1) * 2 for v in views), "no (L, L) copy"

    views.clear()
    dropped = tiny_model(position_embedding_type="alibi", chunked_attention="always", attention_dropout=0.1)
    dropped.config.chunked_attention_block_size = 16
    dropped.train()(**batch)
    assert views and all(v.shape[2] <= 16 for v in views), "dropout: blocks of 16 queries"


@pytest.mark.parametrize("setup", SCORE_BIAS_SETUPS.values(), ids=SCORE_BIAS_SETUPS.keys())
def test_chunked_path_is_chosen_automatically_at_long_length(setup, monkeypatch):
    calls = []
    original = attention_module.chunked_attention_forward
    # the stacks reach the long-input path through transformers' attention interface, under its registered name
    monkeypatch.setitem(
        AttentionInterface._global_mapping,
        attention_module.CHUNKED_ATTENTION,
        lambda *a, **k: calls.append(1) or original(*a, **k),
    )
    model = tiny_model(**setup, chunked_attention_min_length=40)
    short = random_batch(src_len=20, pad_last=False)
    model(**short)
    assert calls == [], "short inputs keep the dense bias path"
    long = random_batch(src_len=48)
    chunked_logits = model(**long).logits
    assert len(calls) == model.config.encoder_layers, "each encoder layer takes the chunked path at long length"
    model.config.chunked_attention = "never"
    assert_same(chunked_logits, model(**long).logits)


def test_chunked_path_bounds_block_memory():
    """With chunked_attention_block_size unset, one block of scores holds about BLOCK_SCORE_ELEMENTS elements."""
    seen = []
    plan_fn = attention_module._attend_block

    def spy(query, *args):
        seen.append(query.shape[2])
        return plan_fn(query, *args)

    model = tiny_model(position_embedding_type="alibi", chunked_attention="always")
    old = attention_module.BLOCK_SCORE_ELEMENTS
    try:
        attention_module.BLOCK_SCORE_ELEMENTS = 4 * 12 * 5  # B=1, H=4, Lk=12 -> 5 queries per block
        attention_module._attend_block = spy
        one = random_batch(batch=1, src_len=12, pad_last=False)
        one["attention_mask"][0, 5] = 0  # a hole in the keys: blocks build their mask (unmasked ones are one view)
        model(**one)
    finally:
        attention_module.BLOCK_SCORE_ELEMENTS = old
        attention_module._attend_block = plan_fn
    assert seen[:3] == [5, 5, 2]


# ---------------------------------------------------------------- cached decoding equals a full forward
CACHE_CASES = (
    list(SETUPS.values())
    + [{"position_embedding_type": "rope", "rope_parameters": s} for s in ROPE_SCALINGS]
    + [{**setup, "chunked_attention": "always", "chunked_attention_block_size": 2} for setup in SCORE_BIAS_SETUPS.values()]
)


@pytest.mark.parametrize("case", CACHE_CASES, ids=lambda c: "-".join(str(v) for v in c.values()).replace(" ", ""))
def test_cached_decoding_logits_equal_full_forward(case):
    model = tiny_model(**case)
    batch = random_batch(tgt_len=9)
    decoder_input_ids = model.prepare_decoder_input_ids_from_labels(batch["labels"])
    full = model(batch["input_ids"], attention_mask=batch["attention_mask"], decoder_input_ids=decoder_input_ids).logits

    steps, cache = decode_step_by_step(model, batch, decoder_input_ids)
    assert cache.get_seq_length() == decoder_input_ids.shape[1]
    assert_same(steps, full)


@pytest.mark.parametrize("pe", ENCODINGS)
def test_generate_greedy_matches_uncached_and_beam_and_sampling_run(pe):
    model = tiny_model(position_embedding_type=pe)
    batch = random_batch()
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    cached = model.generate(**inputs, max_new_tokens=6, do_sample=False, use_cache=True)
    uncached = model.generate(**inputs, max_new_tokens=6, do_sample=False, use_cache=False)
    assert torch.equal(cached, uncached)
    beam_kwargs = {"max_new_tokens": 6, "num_beams": 3, "num_return_sequences": 2, "do_sample": False}
    beams = model.generate(**inputs, **beam_kwargs)
    assert beams.shape[0] == 2 * batch["input_ids"].shape[0]
    assert torch.equal(beams, model.generate(**inputs, **beam_kwargs, use_cache=False)), "cache reordering"
    torch.manual_seed(0)
    sampled = model.generate(**inputs, max_new_tokens=6, do_sample=True, top_k=10)
    assert sampled.shape[0] == batch["input_ids"].shape[0]


# ---------------------------------------------------------------- padding
@pytest.mark.parametrize("kernel", [1, 3])
def test_encoder_conv_reads_the_token_and_the_kernel_minus_one_before_it(kernel):
    from hf_longctx.modeling_longctx import LongCtxTokenConv

    torch.manual_seed(0)
    conv = LongCtxTokenConv(tiny_config(encoder_conv_kernel=kernel))
    torch.nn.init.normal_(conv.weight)
    x = torch.randn(2, 9, 32)
    changed = x.clone()
    changed[:, 4] += 1.0
    moved = (conv(changed) - conv(x)).abs().amax(dim=(0, 2)) > 0
    assert moved.tolist() == [4 <= t < 4 + kernel for t in range(9)]
    mask = torch.ones(2, 9, 1)
    mask[:, :3] = 0  # left padding: what stands at the padded slots must not reach the tokens after them
    noisy = x.clone()
    noisy[:, :3] = 100.0
    assert_same(conv(noisy, mask)[:, 3:], conv(x, mask)[:, 3:], atol=0)


@pytest.mark.parametrize("pe", ["alibi", "relative"])
def test_left_padded_row_equals_the_row_alone_with_offset_encodings(pe):
    """Offset-only encodings do not see where a row starts, so left padding changes nothing (the convolution
    must not read the padded slots)."""
    model = tiny_model(position_embedding_type=pe, encoder_conv_kernel=4)
    batch = random_batch(batch=1, src_len=10, tgt_len=5, pad_last=False)
    alone = model(**batch).logits
    padded_ids = torch.cat([torch.full((1, 3), 7), batch["input_ids"]], dim=1)  # a real id at the pads: masked
    mask = torch.cat([torch.zeros(1, 3, dtype=torch.long), batch["attention_mask"]], dim=1)
    padded = model(input_ids=padded_ids, attention_mask=mask, labels=batch["labels"]).logits
    assert_same(padded, alone)


@pytest.mark.parametrize("setup", SETUPS.values(), ids=SETUPS.keys())
@pytest.mark.parametrize("chunked", ["never", "always"])
def test_padded_batch_equals_each_example_alone(setup, chunked):
    blocks = {"chunked_attention_block_size": 4} if chunked == "always" else {}  # "never" has no blocks to size
    model = tiny_model(**setup, chunked_attention=chunked, **blocks)
    batch = random_batch(batch=3, src_len=12, tgt_len=6)
    batched = model(**batch).logits
    for row in range(3):
        length = int(batch["attention_mask"][row].sum())
        alone = model(input_ids=batch["input_ids"][row : row + 1, :length], labels=batch["labels"][row : row + 1])
        assert_same(batched[row : row + 1], alone.logits)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("implementation,chunked", [("eager", "never"), ("sdpa", "never"), ("sdpa", "always")])
@pytest.mark.parametrize("pe", ENCODINGS)
def test_fully_padded_rows_stay_finite_in_half_precision(pe, implementation, chunked, dtype):
    model = tiny_model(position_embedding_type=pe, attn_implementation=implementation, chunked_attention=chunked)
    model = model.to(dtype)
    batch = random_batch(batch=2, src_len=10)
    batch["attention_mask"][1] = 0  # an example that is all padding
    out = model(**batch)
    assert torch.isfinite(out.logits).all()
    assert torch.isfinite(out.encoder_last_hidden_state).all()


# ---------------------------------------------------------------- properties of the encodings
@pytest.mark.parametrize("pe", BIAS_ENCODINGS)
@pytest.mark.parametrize("causal", [False, True])
def test_bias_depends_only_on_distance(pe, causal):
    torch.manual_seed(0)
    encoding = POSITION_ENCODINGS[pe](tiny_config(), causal=causal)
    q, k = torch.arange(0, 20), torch.arange(0, 20)
    for shift in (1, 7, 1000):
        assert_same(encoding.bias(q + shift, k + shift), encoding.bias(q, k), atol=0)


def test_bidirectional_relative_bias_tells_left_from_right():
    torch.manual_seed(0)
    encoder = POSITION_ENCODINGS["relative"](tiny_config(), causal=False)
    q = k = torch.arange(6)
    bias = encoder.bias(q, k)[0]  # (H, Lq, Lk)
    assert not torch.allclose(bias[:, 3, 2], bias[:, 3, 4])


def test_alibi_bias_is_minus_slope_times_distance():
    encoding = POSITION_ENCODINGS["alibi"](tiny_config(num_heads=4), causal=False)
    q, k = torch.arange(5), torch.arange(7)
    bias = encoding.bias(q, k)[0]
    slopes = alibi_slopes(4)
    for h in range(4):
        for i in range(5):
            for j in range(7):
                assert bias[h, i, j].item() == pytest.approx(-slopes[h] * abs(i - j))


def test_alibi_masks_keys_past_the_max_penalty_and_none_keeps_the_formula():
    q = k = torch.arange(40)
    cut = POSITION_ENCODINGS["alibi"](tiny_config(num_heads=4, alibi_max_penalty=2.0), causal=False).bias(q, k)[0]
    exact = POSITION_ENCODINGS["alibi"](tiny_config(num_heads=4, alibi_max_penalty=None), causal=False).bias(q, k)[0]
    slopes = torch.tensor(alibi_slopes(4))[:, None, None]
    distance = (k[None, :] - q[:, None]).abs()
    assert_same(exact, -slopes * distance, atol=1e-6)
    beyond = slopes * distance > 2.0
    assert beyond.any() and (~beyond).any()
    assert (cut[beyond] == ALIBI_CUT_BIAS).all()
    assert_same(cut[~beyond], exact[~beyond], atol=0)


@pytest.mark.parametrize("chunked", ["never", "always"])
def test_alibi_cut_leaves_a_long_input_unchanged(chunked):
    """At 600 tokens the default cut masks most keys of the steepest heads; what they weighed is below fp32."""
    batch = random_batch(batch=2, src_len=600, tgt_len=9)
    exact = tiny_model(alibi_max_penalty=None, chunked_attention=chunked)
    cut = tiny_model(alibi_max_penalty=60.0, chunked_attention=chunked)
    with torch.no_grad():
        assert_same(cut(**batch).logits, exact(**batch).logits, atol=1e-6)


@pytest.mark.parametrize(
    "heads,expected",
    [
        (8, [2.0**-i for i in range(1, 9)]),
        (4, [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8]),
        # not a power of 2: the 4-head slopes, then every other slope of the 8-head series (Press et al.'s code)
        (6, [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8, 2.0**-1, 2.0**-3]),
    ],
)
def test_alibi_slopes(heads, expected):
    assert alibi_slopes(heads) == pytest.approx(expected)


def test_sinusoidal_table_equals_the_classic_formula():
    d = 32
    encoding = POSITION_ENCODINGS["sinusoidal"](tiny_config(d_model=d), causal=False)
    table = encoding.embed(torch.arange(50))
    for pos in (0, 1, 7, 49):
        for i in range(d // 2):
            angle = pos / 10000 ** (2 * i / d)
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-5)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-5)


def test_rope_linear_scaling_is_position_interpolation():
    plain = POSITION_ENCODINGS["rope"](tiny_config(), causal=False)
    linear = POSITION_ENCODINGS["rope"](tiny_config(rope_parameters={"rope_type": "linear", "factor": 4.0}), False)
    positions = torch.arange(0, 40, 4)
    cos_lin, sin_lin = linear.rotary(positions)
    cos_ref, sin_ref = plain.rotary(positions // 4)
    assert_same(cos_lin, cos_ref)
    assert_same(sin_lin, sin_ref)


@pytest.mark.parametrize("rope_parameters", [{}, {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16}])
def test_partial_rotary_rotates_the_first_dimensions_as_rope_on_a_smaller_head_and_passes_the_rest(
    rope_parameters, monkeypatch
):
    config = tiny_config(position_embedding_type="rope", rope_parameters={**rope_parameters, "partial_rotary_factor": 0.5})
    rotary_dim = config.rotary_dim
    assert rotary_dim == config.head_dim // 2
    small_head = tiny_config(d_model=config.d_model // 2, position_embedding_type="rope", rope_parameters=rope_parameters)
    positions = torch.arange(20)
    cos, sin = POSITION_ENCODINGS["rope"](config, causal=False).rotary(positions)
    assert cos.shape[-1] == rotary_dim
    assert_same(cos, POSITION_ENCODINGS["rope"](small_head, causal=False).rotary(positions)[0])

    attention = tiny_model(position_embedding_type="rope", rope_parameters=config.rope_parameters).model.encoder.layers[0].self_attn
    seen = {}
    monkeypatch.setitem(
        AttentionInterface._global_mapping,
        attention.config._attn_implementation,
        lambda module, q, k, v, mask, **kwargs: (seen.update(q=q, k=k) or v.transpose(1, 2), None),
    )
    hidden = torch.randn(1, 20, config.d_model)
    attention(hidden, position_embeddings=(cos, sin))
    query, key = attention._heads(attention.q_proj(hidden)), attention._heads(attention.k_proj(hidden))
    assert_same(seen["q"][..., rotary_dim:], query[..., rotary_dim:])  # the content-only dimensions pass unrotated
    assert_same(seen["k"][..., rotary_dim:], key[..., rotary_dim:])
    expected_q, expected_k = apply_rotary_pos_emb(query[..., :rotary_dim], key[..., :rotary_dim], cos, sin)
    assert_same(seen["q"][..., :rotary_dim], expected_q)
    assert_same(seen["k"][..., :rotary_dim], expected_k)


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("pair", ENCODING_PAIRS, ids=pair_id)
@pytest.mark.parametrize("chunked", ["never", "always"])
def test_every_parameter_receives_a_gradient(pair, chunked, batch):
    model = tiny_model(**pair_kwargs(pair), chunked_attention=chunked).train()
    model(**batch).loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize("use_reentrant", [False, True])
@pytest.mark.parametrize("pe", ["relative", "alibi", "rope"])
def test_gradient_checkpointing_gives_the_same_gradients(pe, use_reentrant, batch):
    model = tiny_model(position_embedding_type=pe).train()
    _, plain = logits_and_grads(model, batch)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": use_reentrant})
    assert model.is_activation_checkpointing
    _, checkpointed = logits_and_grads(model, batch)
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        assert_same(checkpointed[name], plain[name])


# ---------------------------------------------------------------- HF conventions
def test_auto_classes_resolve_to_longctx():
    config = AutoConfig.for_model("longctx", d_model=32, num_heads=4)
    assert type(AutoModelForSeq2SeqLM.from_config(config)) is LongCtxForConditionalGeneration
    assert type(AutoModel.from_config(config)) is LongCtxModel


def test_embeddings_are_tied_and_stay_tied_after_resize():
    model = tiny_model()
    shared = model.model.shared.weight
    assert model.lm_head.weight is shared
    assert model.model.encoder.embed_tokens.weight is shared and model.model.decoder.embed_tokens.weight is shared
    model.resize_token_embeddings(120)
    assert model.config.vocab_size == 120
    assert model.lm_head.weight is model.model.shared.weight
    assert model.model.encoder.embed_tokens.weight is model.model.shared.weight
    batch = random_batch()
    batch["input_ids"][0, 0] = 119
    assert model(**batch).logits.shape[-1] == 120


def test_untied_embeddings_are_separate():
    model = tiny_model(tie_word_embeddings=False)
    assert model.lm_head.weight is not model.model.shared.weight


def test_loss_ignores_minus_100_and_matches_cross_entropy():
    model = tiny_model()
    batch = random_batch()
    labels = batch["labels"].clone()
    labels[0, -3:] = -100
    out = model(**{**batch, "labels": labels})
    keep = labels != -100
    expected = torch.nn.functional.cross_entropy(out.logits[keep], labels[keep])
    assert out.loss.item() == pytest.approx(expected.item(), abs=1e-6)
    # Trainer's gradient-accumulation normalisation: a sum over tokens divided by num_items_in_batch
    summed = model(**{**batch, "labels": labels}, num_items_in_batch=torch.tensor(100)).loss
    assert summed.item() == pytest.approx(expected.item() * keep.sum().item() / 100, rel=1e-5)


def test_prepare_decoder_input_ids_from_labels_shifts_right():
    model = tiny_model()
    labels = torch.tensor([[5, 6, 7, 1], [8, 9, -100, -100]])
    shifted = model.prepare_decoder_input_ids_from_labels(labels)
    start, pad = model.config.decoder_start_token_id, model.config.pad_token_id
    assert shifted.tolist() == [[start, 5, 6, 7], [start, 8, 9, pad]]


@pytest.mark.parametrize("scale_embedding", [False, True])
def test_inputs_embeds_equal_input_ids(scale_embedding):
    model = tiny_model(scale_embedding=scale_embedding)
    batch = random_batch()
    from_ids = model(**batch).logits
    embeds = model.get_input_embeddings()(batch["input_ids"])
    decoder_embeds = model.get_input_embeddings()(model.prepare_decoder_input_ids_from_labels(batch["labels"]))
    from_embeds = model(
        inputs_embeds=embeds,
        attention_mask=batch["attention_mask"],
        decoder_inputs_embeds=decoder_embeds,
        labels=batch["labels"],
    ).logits
    assert_same(from_embeds, from_ids)


def test_output_attentions_and_hidden_states():
    model = tiny_model(attn_implementation="eager", position_embedding_type="relative")
    batch = random_batch()
    out = model(**batch, output_attentions=True, output_hidden_states=True)
    config = model.config
    assert len(out.encoder_hidden_states) == config.encoder_layers + 1
    assert len(out.decoder_hidden_states) == config.decoder_layers + 1
    assert len(out.encoder_attentions) == config.encoder_layers
    b, ls, lt, h = batch["input_ids"].shape[0], batch["input_ids"].shape[1], batch["labels"].shape[1], config.num_heads
    assert out.encoder_attentions[0].shape == (b, h, ls, ls)
    assert out.decoder_attentions[0].shape == (b, h, lt, lt)
    assert out.cross_attentions[0].shape == (b, h, lt, ls)
    # probabilities: rows sum to one, padded keys get none, the decoder never looks ahead
    assert_same(out.encoder_attentions[0].sum(-1), torch.ones(b, h, ls))
    assert out.encoder_attentions[0][1, :, :, -2:].abs().max() == 0
    assert torch.triu(out.decoder_attentions[0], diagonal=1).abs().max() == 0
    assert_same(out.encoder_hidden_states[-1], out.encoder_last_hidden_state)


def test_return_dict_false_gives_a_tuple():
    model = tiny_model()
    out = model(**random_batch(), return_dict=False)
    assert isinstance(out, tuple) and out[0].ndim == 0


def test_weights_are_initialised_as_configured():
    model = tiny_model(d_model=64, d_ff=128, initializer="normal", init_std=0.1)  # not HF's fallback 0.02
    linear = model.model.encoder.layers[0].ffn.fc1
    assert linear.weight.std().item() == pytest.approx(0.1, rel=0.1)
    assert linear.bias.abs().max() == 0
    norm = model.model.encoder.layers[0].ffn_residual.norm
    assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)
    assert model.model.shared.weight.std().item() == pytest.approx(0.1, rel=0.1)
    relative = tiny_model(position_embedding_type="relative", initializer="normal", init_std=0.1).model.encoder.position
    assert relative.relative_attention_bias.weight.std().item() == pytest.approx(0.1, rel=0.25)


ARCHITECTURE_OPTIONS = [
    {"pre_norm": False},
    {"norm_type": "rmsnorm"},
    {"scale_embedding": True},
    {"gated_ffn": True, "activation_function": "gelu_new", "ffn_bias": False, "attention_bias": False},
    {"attention_scale": 1.0},
    {"embedding_norm": True, "pre_norm": False},
    {"final_logits_bias": True, "decoder_output_scale": 32**-0.5},
]


@pytest.mark.parametrize("overrides", ARCHITECTURE_OPTIONS, ids=lambda o: "-".join(o))
def test_architecture_options_train_and_decode_consistently(overrides):
    model = tiny_model(position_embedding_type="relative", **overrides)
    batch = random_batch()
    out = model(**batch)
    assert torch.isfinite(out.loss)
    greedy = model.generate(batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=4)
    uncached = model.generate(
        batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=4, use_cache=False
    )
    assert torch.equal(greedy, uncached)


def test_training_mode_uses_dropout_and_eval_does_not():
    model = tiny_model(dropout=0.3).train()
    batch = random_batch()
    a, b = model(**batch).logits, model(**batch).logits
    assert not torch.allclose(a, b)
    model.eval()
    assert torch.equal(model(**batch).logits, model(**batch).logits)


@pytest.mark.parametrize("layers", [(1, 3), (3, 1)])
def test_cache_is_sized_by_decoder_layers(layers):
    model = tiny_model(position_embedding_type="relative", encoder_layers=layers[0], decoder_layers=layers[1])
    batch = random_batch()
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    out = model.generate(**inputs, max_new_tokens=5, return_dict_in_generate=True, output_scores=True)
    assert len(out.cache.self_attention_cache.layers) == layers[1]
    assert torch.equal(out.sequences, model.generate(**inputs, max_new_tokens=5, use_cache=False))


@pytest.mark.parametrize("causal", [False, True])
def test_relative_bias_equals_hf_t5_compute_bias(causal):
    from transformers import T5Config
    from transformers.models.t5.modeling_t5 import T5Attention

    config = tiny_config()
    ours = POSITION_ENCODINGS["relative"](config, causal=causal)
    t5_config = T5Config(
        d_model=32,
        d_kv=8,
        num_heads=4,
        relative_attention_num_buckets=config.relative_attention_num_buckets,
        relative_attention_max_distance=config.relative_attention_max_distance,
        is_decoder=causal,
    )
    t5 = T5Attention(t5_config, has_relative_attention_bias=True)
    t5.relative_attention_bias.weight.data.copy_(ours.relative_attention_bias.weight.data)
    for q_len, k_len in [(9, 9), (40, 40)]:
        assert_same(ours.bias(torch.arange(q_len), torch.arange(k_len)), t5.compute_bias(q_len, k_len), atol=0)
    # a block of queries deep inside a long input sees the same bias as the full table rows
    full = ours.bias(torch.arange(40), torch.arange(40))
    assert_same(ours.bias(torch.arange(17, 23), torch.arange(40)), full[:, :, 17:23], atol=0)


@pytest.mark.parametrize(
    "case",
    [pair_kwargs(p) for p in ENCODING_PAIRS] + [{"position_embedding_type": "relative", "chunked_attention": "always"}],
    ids=lambda c: "-".join(str(v) for v in c.values()),
)
def test_static_cache_generates_what_the_dynamic_cache_does(case):
    model = tiny_model(**case)
    batch = random_batch()
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    dynamic = model.generate(**inputs, max_new_tokens=6, output_scores=True, return_dict_in_generate=True)
    static = model.generate(
        **inputs, max_new_tokens=6, cache_implementation="static", output_scores=True, return_dict_in_generate=True
    )
    assert torch.equal(static.sequences, dynamic.sequences)
    for a, b in zip(static.scores, dynamic.scores, strict=True):
        assert_same(a, b)


@pytest.mark.slow
@pytest.mark.parametrize(
    "case",
    [{"position_embedding_type": "relative"}, {"position_embedding_type": "rope"}, {"chunked_attention": "always"}],
    ids=["relative", "rope", "alibi-chunked"],
)
def test_compiled_static_cache_generation_matches_eager(case):
    """HF's compiled decoding (static cache + `compile_config`, fullgraph): no step reads a tensor on the host (a
    graph break would fail `fullgraph`), one graph serves every step, and the tokens and scores are eager's."""
    from torch._dynamo.utils import counters
    from transformers import CompileConfig

    torch._dynamo.reset()
    counters.clear()
    model = tiny_model(**case)
    batch = random_batch()
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    kwargs = dict(max_new_tokens=6, cache_implementation="static", output_scores=True, return_dict_in_generate=True)
    eager = model.generate(**inputs, **kwargs)
    compile_config = CompileConfig(fullgraph=True, dynamic=False, mode="default")
    compile_config._compile_all_devices = True  # HF compiles on accelerators only unless told
    with torch._dynamo.config.patch(error_on_recompile=True):
        compiled = model.generate(**inputs, **kwargs, compile_config=compile_config)
    assert counters["stats"]["unique_graphs"] == 1, "HF compiles only where its criteria hold, else runs eagerly"
    assert torch.equal(compiled.sequences, eager.sequences)
    for a, b in zip(compiled.scores, eager.scores, strict=True):
        assert_same(a, b)


def test_whole_forward_compiles_as_one_graph():
    """`torch.compile(model, fullgraph=True)`: the checks that read ids and positions on the host step aside."""
    torch._dynamo.reset()
    model = tiny_model(position_embedding_type="alibi", encoder_layers=1, decoder_layers=1)
    batch = random_batch()
    with torch.no_grad():
        assert_same(torch.compile(model, fullgraph=True)(**batch).logits, model(**batch).logits)


@pytest.mark.slow
@pytest.mark.parametrize("pe", ["alibi", "rope"])
def test_flex_attention_forward_matches_eager(pe):
    """FlexAttention compiles on CPU (tens of seconds) but has no CPU backward: inference only."""
    batch = random_batch()
    eager = tiny_model(position_embedding_type=pe, attn_implementation="eager")
    flex = tiny_model(position_embedding_type=pe, attn_implementation="flex_attention")
    with torch.no_grad():
        assert_same(flex(**batch).logits, eager(**batch).logits)


def test_cached_step_accepts_the_deprecated_past_key_values_name():
    model = tiny_model(position_embedding_type="rope")
    batch = random_batch(tgt_len=5)
    decoder_input_ids = model.prepare_decoder_input_ids_from_labels(batch["labels"])
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    full = model(**inputs, decoder_input_ids=decoder_input_ids).logits
    prefix = model(**inputs, decoder_input_ids=decoder_input_ids[:, :4], use_cache=True)
    with pytest.warns(FutureWarning, match="past_key_values"):
        step = model(**inputs, decoder_input_ids=decoder_input_ids[:, 4:], past_key_values=prefix.cache, use_cache=True)
    assert_same(step.logits, full[:, 4:])


@pytest.mark.parametrize("pe", ["sinusoidal", "rope"])
def test_frequency_tables_survive_a_cast_to_bfloat16(pe):
    """Trainer's bf16_full_eval casts buffers too; angles from a bf16 frequency table drift with position."""
    encoding = POSITION_ENCODINGS[pe](tiny_config(), causal=False)
    positions = torch.arange(16000, 16008)
    reference = encoding.embed(positions) if pe == "sinusoidal" else encoding.rotary(positions)[0]
    encoding.to(torch.bfloat16)
    cast = encoding.embed(positions) if pe == "sinusoidal" else encoding.rotary(positions)[0]
    assert_same(cast, reference, atol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("pe", ENCODINGS)
def test_half_precision_model_tracks_fp32(pe, dtype):
    model = tiny_model(position_embedding_type=pe)
    batch = random_batch()
    reference = model(**batch).logits
    half = model.to(dtype)(**batch).logits.float()
    assert (half - reference).abs().max() < 0.05 * reference.abs().max()


def test_dynamic_rope_is_default_rope_within_the_trained_length_and_ntk_beyond():
    trained, factor = 16, 2.0
    default = POSITION_ENCODINGS["rope"](tiny_config(), causal=False)
    dynamic = POSITION_ENCODINGS["rope"](
        tiny_config(rope_parameters={"rope_type": "dynamic", "factor": factor}, max_position_embeddings=trained),
        causal=False,
    )
    inside = torch.arange(trained)
    assert_same(dynamic.rotary(inside)[0], default.rotary(inside)[0], atol=0)
    beyond = torch.arange(40)
    dim, theta = tiny_config().head_dim, 10000.0
    base = theta * ((factor * 40 / trained) - (factor - 1)) ** (dim / (dim - 2))  # NTK-aware base for 40 tokens
    inv_freq = 1.0 / base ** (torch.arange(0, dim, 2).float() / dim)
    angles = beyond.float()[:, None] * inv_freq[None, :]
    assert_same(dynamic.rotary(beyond)[0][0], torch.cat((angles, angles), -1).cos())


def test_eager_output_attentions_takes_the_dense_path_even_when_chunking_is_on():
    model = tiny_model(position_embedding_type="alibi", attn_implementation="eager", chunked_attention="always")
    out = model(**random_batch(), output_attentions=True)
    assert len(out.encoder_attentions) == model.config.encoder_layers
    assert out.encoder_attentions[0] is not None


@pytest.mark.parametrize("overrides", ARCHITECTURE_OPTIONS, ids=lambda o: "-".join(o))
def test_architecture_options_round_trip_through_save_and_load(overrides, tmp_path):
    model = tiny_model(position_embedding_type="relative", **overrides)
    if overrides.get("final_logits_bias"):
        model.final_logits_bias.normal_()  # a checkpoint's bias must survive the round trip
    batch = random_batch()
    model.save_pretrained(tmp_path)
    loaded = LongCtxForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert torch.equal(loaded(**batch).logits, model(**batch).logits)


def test_layer_options_change_the_layers_as_documented():
    plain = tiny_model()
    gated = tiny_model(gated_ffn=True, ffn_bias=False, attention_bias=False)
    ffn = gated.model.encoder.layers[0].ffn
    assert plain.model.encoder.layers[0].ffn.fc1_linear is None and ffn.fc1_linear is not None
    assert ffn.fc1.bias is None and ffn.fc2.bias is None
    assert gated.model.encoder.layers[0].self_attn.q_proj.bias is None
    x = torch.randn(2, 3, 32)
    expected = ffn.fc2(ffn.act(ffn.fc1(x)) * ffn.fc1_linear(x))
    assert_same(ffn(x), expected)
    assert tiny_model(attention_scale=1.0).model.encoder.layers[0].self_attn.scaling == 1.0
    assert plain.model.encoder.layers[0].self_attn.scaling == 8**-0.5


def test_final_logits_bias_is_added_and_resized():
    model = tiny_model(final_logits_bias=True)
    batch = random_batch()
    before = model(**batch).logits
    model.final_logits_bias[0, 5] = 3.0
    after = model(**batch).logits
    assert_same(after[..., 5] - before[..., 5], torch.full_like(before[..., 5], 3.0), atol=1e-5)
    model.resize_token_embeddings(120)
    assert model.final_logits_bias.shape == (1, 120) and model.final_logits_bias[0, 5] == 3.0


def test_sinusoidal_halves_layout_is_all_sines_then_all_cosines():
    interleaved = POSITION_ENCODINGS["sinusoidal"](tiny_config(), causal=False).embed(torch.arange(9))
    halves = POSITION_ENCODINGS["sinusoidal"](tiny_config(sinusoidal_layout="halves"), causal=False).embed(
        torch.arange(9)
    )
    assert_same(halves[:, :16], interleaved[:, 0::2], atol=0)
    assert_same(halves[:, 16:], interleaved[:, 1::2], atol=0)


@pytest.mark.parametrize("pe", ["sinusoidal", "relative", "alibi", "rope"])
def test_randomized_positions_apply_in_training_only(pe):
    model = tiny_model(position_embedding_type=pe, randomized_positions_max_length=500)
    batch = random_batch()
    original = {"additive": "embed", "bias": "bias", "rotary": "rotary"}[model.model.encoder.position.kind]
    recorded = []
    method = getattr(model.model.encoder.position, original)
    setattr(model.model.encoder.position, original, lambda *a: recorded.append(a[0].clone()) or method(*a))
    model.eval()
    model(**batch)
    assert torch.equal(recorded[-1], torch.arange(11))
    model.train()
    torch.manual_seed(0)
    model(**batch).loss.backward()
    positions = recorded[-1]
    assert len(positions) == 11 and positions.max() < 500 and positions.max() >= 11
    assert torch.all(positions[1:] > positions[:-1]), "sorted and distinct"


def test_a_randomized_positions_bound_below_a_training_source_is_refused():
    """It used to train such sources on 0..L-1 without a word, as if the option were off."""
    model = tiny_model(position_embedding_type="alibi", randomized_positions_max_length=8).train()
    with pytest.raises(ValueError, match=r"`randomized_positions_max_length`=8 is below this training batch's 11 "
                       r"source tokens.*at least the longest training source"):  # fmt: skip
        model(**random_batch())
    model.eval()(**random_batch())  # inference reads 0..L-1, whatever the bound


def test_decoder_alone_skips_cross_attention_and_caches_once():
    model = tiny_model(position_embedding_type="rope")
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model.model.decoder
    ids = torch.randint(2, 99, (2, 5))
    full = decoder(input_ids=ids, use_cache=True)
    assert full.cache.get_seq_length() == 5
    prefix = decoder(input_ids=ids[:, :4], use_cache=True)
    step = decoder(input_ids=ids[:, 4:], cache=prefix.cache, use_cache=True)
    assert_same(step.last_hidden_state, full.last_hidden_state[:, 4:])


def test_sinusoidal_scale_multiplies_the_table():
    plain = POSITION_ENCODINGS["sinusoidal"](tiny_config(), causal=False).embed(torch.arange(9))
    scaled = POSITION_ENCODINGS["sinusoidal"](tiny_config(sinusoidal_scale=0.02), causal=False).embed(torch.arange(9))
    assert_same(scaled, plain * 0.02, atol=1e-7)


# ---------------------------------------------------------------- log-length scaling of the cross-attention
def test_cross_attention_logn_scaling_is_a_query_scale_past_the_trained_length():
    """Option on over n = 20 unpadded encoder tokens == the same model with its cross-attention queries x log 20 / log 8."""
    batch = random_batch(src_len=20, pad_last=False)
    plain = tiny_model()
    scaled = tiny_model(cross_attention_logn_length=8)
    reference = tiny_model()
    factor = math.log(20) / math.log(8)
    with torch.no_grad():
        for layer in reference.model.decoder.layers:
            layer.encoder_attn.q_proj.weight.mul_(factor)
            layer.encoder_attn.q_proj.bias.mul_(factor)
        assert_same(scaled(**batch).logits, reference(**batch).logits)
        assert (scaled(**batch).logits - plain(**batch).logits).abs().max() > 10 * ATOL, (
            "the option must change something"
        )
        # up to the trained length it changes nothing
        short = random_batch(src_len=8, pad_last=False)
        assert_same(tiny_model(cross_attention_logn_length=8)(**short).logits, plain(**short).logits, atol=0)


@pytest.mark.parametrize("pe", ["alibi", "rope"])
def test_cross_attention_logn_scaling_counts_each_examples_own_tokens(pe):
    """n is each example's unpadded length: a padded batch decodes as each example alone, cached as uncached."""
    model = tiny_model(position_embedding_type=pe, cross_attention_logn_length=4)
    batch = random_batch(src_len=14)
    with torch.no_grad():
        together = model(**batch).logits
        for row in range(3):
            keep = batch["attention_mask"][row].bool()
            alone = {k: v[row : row + 1] for k, v in batch.items()}
            alone["input_ids"], alone["attention_mask"] = alone["input_ids"][:, keep], alone["attention_mask"][:, keep]
            assert_same(model(**alone).logits, together[row : row + 1])
    # a 4-D mask counts each example's attended keys too
    decoder = model.model.decoder
    states = torch.zeros(3, 14, model.config.d_model)
    mask_2d = batch["attention_mask"]
    mask_4d = mask_2d[:, None, None, :].bool().expand(3, 1, 5, 14)
    additive = torch.zeros(3, 1, 5, 14).masked_fill(~mask_4d, torch.finfo(torch.float32).min)
    expected = decoder._logn_scale(states, mask_2d, torch.float32)
    assert len(set(expected.flatten().tolist())) == 3, "three different unpadded lengths, three scales"
    for mask in (mask_4d, additive):
        assert_same(decoder._logn_scale(states, mask, torch.float32), expected, atol=0)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    cached = model.generate(**inputs, max_new_tokens=6, do_sample=False, use_cache=True)
    uncached = model.generate(**inputs, max_new_tokens=6, do_sample=False, use_cache=False)
    assert torch.equal(cached, uncached)


@pytest.mark.parametrize("attention_scale", [None, 1.0])
def test_fan_in_initializer_draws_the_stds_of_a_fresh_hf_t5(attention_scale):
    """`initializer="fan_in"`: every weight's std as in a freshly initialised T5 of the same size (the scores start
    where T5's do whatever `attention_scale` is: q is scaled by head_dim**-0.5 / scale)."""
    from transformers import T5Config, T5ForConditionalGeneration

    d, heads, d_ff = 64, 4, 256
    torch.manual_seed(0)
    t5 = T5ForConditionalGeneration(T5Config(vocab_size=500, d_model=d, d_kv=d // heads, d_ff=d_ff, num_heads=heads, num_layers=2))
    ours = tiny_model(vocab_size=500, d_model=d, num_heads=heads, d_ff=d_ff, initializer="fan_in", attention_scale=attention_scale, position_embedding_type="relative", relative_attention_num_buckets=32, relative_attention_max_distance=128)
    t5_attn, our_attn = t5.encoder.block[0].layer[0].SelfAttention, ours.model.encoder.layers[0].self_attn
    q_factor = 1.0 if attention_scale == 1.0 else (d // heads) ** 0.5  # with 1/sqrt(head_dim) on the scores, q is that much larger
    pairs = [
        (t5.shared.weight, ours.model.shared.weight, 1.0),
        (t5_attn.q.weight, our_attn.q_proj.weight, q_factor),
        (t5_attn.k.weight, our_attn.k_proj.weight, 1.0),
        (t5_attn.o.weight, our_attn.o_proj.weight, 1.0),
        (t5.encoder.block[0].layer[1].DenseReluDense.wi.weight, ours.model.encoder.layers[0].ffn.fc1.weight, 1.0),
        (t5.encoder.block[0].layer[1].DenseReluDense.wo.weight, ours.model.encoder.layers[0].ffn.fc2.weight, 1.0),
        (t5_attn.relative_attention_bias.weight, ours.model.encoder.position.relative_attention_bias.weight, 1.0),
    ]
    for theirs, mine, factor in pairs:
        assert mine.std().item() == pytest.approx(theirs.std().item() * factor, rel=0.15)
    assert ours.config.decoder_output_scale == d**-0.5  # T5's with tied embeddings, unless given
    untied = tiny_model(vocab_size=500, d_model=d, num_heads=heads, d_ff=d_ff, initializer="fan_in", tie_word_embeddings=False)
    assert untied.config.decoder_output_scale == 1.0  # T5 v1.1: an untied head drawn N(0, 1), no output scale
    default = tiny_model(vocab_size=500, d_model=d, num_heads=heads, d_ff=d_ff)
    assert default.model.shared.weight.std().item() == pytest.approx(0.02, rel=0.1)  # "normal" stays BART's
    assert default.config.decoder_output_scale == 1.0


@pytest.mark.parametrize("pe", ["alibi", "rope"])
@pytest.mark.parametrize("causal", [False, True])
def test_relative_bias_adds_t5_buckets_to_the_scores(pe, causal):
    """`relative_bias` (on by default for alibi): the stack's score bias is the encoding's own (ALiBi's, none for
    RoPE) plus a T5 bucket table of its own, bidirectional in the encoder and causal in the decoder."""
    model = tiny_model(position_embedding_type=pe, relative_bias=True)
    stack = model.model.decoder if causal else model.model.encoder
    q = k = torch.arange(12)
    expected = POSITION_ENCODINGS["relative"](model.config, causal=causal)
    expected.load_state_dict(stack.relative_bias.state_dict())
    own = stack.position.bias(q, k) if pe == "alibi" else 0
    with torch.no_grad():
        assert_same(stack._position_bias(q, k), own + expected.bias(q, k), atol=0)
    assert tiny_model(position_embedding_type="alibi").model.encoder.relative_bias is not None  # the default
    # the default is per stack: on the alibi encoder, not on a rope decoder (True puts it on both)
    mixed = tiny_model(position_embedding_type="alibi", decoder_position_embedding_type="rope").model
    assert mixed.encoder.relative_bias is not None and mixed.decoder.relative_bias is None
    both = tiny_model(position_embedding_type="alibi", decoder_position_embedding_type="rope", relative_bias=True).model
    assert both.encoder.relative_bias is not None and both.decoder.relative_bias is not None
    for plain in ("relative", "sinusoidal", "learned", "rope"):
        assert tiny_model(position_embedding_type=plain).model.encoder.relative_bias is None


# ---------------------------------------------------------------- an encoding registered from outside the package
class _LogDistanceBias(OffsetBias):
    """A KERPLE-like log penalty with one learned weight per head: score += -softplus(w_h) * log(1 + |i - j|)."""

    description = "A test's log-distance bias."

    def __init__(self, config, causal):
        super().__init__(config, causal)
        self.weight = torch.nn.Parameter(torch.empty(config.num_heads))
        self.init_parameters()

    def init_parameters(self):
        hf_init.ones_(self.weight)

    def bias_by_offset(self, lowest, count, device):
        distance = torch.arange(lowest, lowest + count, device=device).abs().float()
        return -torch.nn.functional.softplus(self.weight)[:, None] * torch.log1p(distance)


@pytest.fixture
def logdistance():
    register_position_encoding("logdistance", _LogDistanceBias)
    yield "logdistance"
    del POSITION_ENCODINGS["logdistance"]


def test_an_encoding_registered_from_outside_trains_saves_reloads_and_generates(logdistance, tmp_path):
    model = tiny_model(position_embedding_type=logdistance).train()
    batch = random_batch()
    model(**batch).loss.backward()
    assert model.model.encoder.position.weight.grad.abs().sum() > 0, "the outside encoding is in the graph"
    model.eval()
    with torch.no_grad():
        before = model(**batch).logits
        model.model.encoder.position.weight.fill_(3.0)
        dense = model(**batch).logits
        assert not torch.allclose(dense, before), "its weights shape the output"
        model.config.chunked_attention, model.config.chunked_attention_block_size = "always", 3
        assert_same(model(**batch).logits, dense)  # the long-input path serves it block by block
        model.config.chunked_attention = "auto"
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    assert torch.equal(loaded(**batch).logits, model(**batch).logits)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    cached = loaded.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert torch.equal(cached, loaded.generate(**inputs, max_new_tokens=5, do_sample=False, use_cache=False))


@pytest.mark.parametrize(
    "name,cls,error,pattern",
    [
        ("alibi", _LogDistanceBias, ValueError, r"'alibi' is registered already \(AlibiPositions\)"),
        ("", _LogDistanceBias, ValueError, r"`name` must be a non-empty string"),
        ("mine", torch.nn.Linear, TypeError, r"must be a subclass of hf_longctx.positions.PositionEncoding"),
        ("mine", type("Half", (PositionEncoding,), {"kind": "bias"}), TypeError, r"Half has kind='bias' but no `bias`: subclass OffsetBias"),
        ("mine", type("Odd", (PositionEncoding,), {"kind": "odd"}), ValueError, r"Odd.kind='odd' is not one of none, additive, bias, rotary"),
        ("mine", type("Opt", (OffsetBias,), {"options": ("kerple_r1",), "bias_by_offset": lambda *a: None}), ValueError, r"Opt.options names kerple_r1, which are not LongCtxConfig fields"),
        ("mine", type("NoOffsets", (OffsetBias,), {}), TypeError, r"NoOffsets subclasses OffsetBias but does not implement `bias_by_offset`"),
    ],
)
def test_register_position_encoding_refuses_what_it_cannot_use(name, cls, error, pattern):
    with pytest.raises(error, match=pattern):
        register_position_encoding(name, cls)


# ---------------------------------------------------------------- encoder_local_radius
@pytest.mark.parametrize("pe", ["rope", "alibi", "relative", "sinusoidal"])
@pytest.mark.parametrize("chunked", ["never", "always"])
def test_encoder_local_radius_masks_keys_past_it_and_nothing_else(pe, chunked):
    """Every encoder self-attention weight past the radius is 0 and within it positive (eager, whose weights are
    returned); the decoder's self- and cross-attention keep every key; the long-input path gives the same logits."""
    radius = 3
    batch = random_batch(src_len=15, pad_last=False)
    model = tiny_model(position_embedding_type=pe, encoder_local_radius=radius, attn_implementation="eager")
    out = model(**batch, output_attentions=True)
    distance = (torch.arange(15)[None, :] - torch.arange(15)[:, None]).abs()
    for weights in out.encoder_attentions:
        assert (weights[..., distance > radius] == 0).all()
        assert (weights[..., distance <= radius] > 0).all()
    for weights in out.cross_attentions:
        assert (weights > 0).all(), "the decoder reads the whole source"
    whole = tiny_model(position_embedding_type=pe, attn_implementation="eager")(**batch, output_attentions=True)
    assert (whole.encoder_attentions[0][..., distance > radius] > 0).all(), "without the radius every key counts"
    fast = tiny_model(
        position_embedding_type=pe, encoder_local_radius=radius, chunked_attention=chunked, chunked_attention_block_size=4
    )
    assert_same(fast(**batch).logits, out.logits)


def test_encoder_local_radius_changes_nothing_when_it_covers_the_source():
    batch = random_batch(src_len=9)
    assert_same(tiny_model(encoder_local_radius=8)(**batch).logits, tiny_model()(**batch).logits)


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"encoder_local_radius": 0}, r"`encoder_local_radius` .* must be an integer >= 1, got 0"),
        (
            {"encoder_local_radius": 4, "randomized_positions_max_length": 256},
            r"`encoder_local_radius`=4 .* `randomized_positions_max_length`=256 .* set one of them to None",
        ),
    ],
)
def test_encoder_local_radius_refuses_what_it_cannot_do(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)
