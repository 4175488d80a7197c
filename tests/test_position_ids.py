"""Explicit positions (`position_ids` for the encoder, `decoder_position_ids` for the decoder), as Llama and T5Gemma
take them: the default numbering given explicitly changes nothing, a shift moves exactly the encodings that read
absolute positions, each example reads its own row, and packed sequences encode as each one alone."""

import pytest
import torch
from conftest import ENCODING_PAIRS, ENCODINGS, SCORE_BIAS_SETUPS, random_batch, tiny_config, tiny_model

from hf_longctx import POSITION_ENCODINGS, LongCtxModel


def assert_close(a, b, atol=1e-5):
    assert a.shape == b.shape
    diff = (a - b).abs().max().item()
    assert diff <= atol, f"max abs diff {diff:.3g} > {atol}"


def pair_kwargs(pair):
    return {"position_embedding_type": pair[0], "decoder_position_embedding_type": pair[1]}


def pair_id(pair):
    return pair[0] if pair[0] == pair[1] else f"{pair[0]}+dec-{pair[1]}"


def reads_absolute_positions(name: str) -> bool:
    """An added table (sinusoidal, learned) reads a position itself; a bias, a rotation and none read offsets only."""
    return POSITION_ENCODINGS[name].kind == "additive"


@pytest.mark.parametrize("pair", ENCODING_PAIRS, ids=pair_id)
def test_the_default_numbering_given_explicitly_changes_nothing(pair):
    model = tiny_model(**pair_kwargs(pair))
    batch = random_batch()
    (b, ls), lt = batch["input_ids"].shape, batch["labels"].shape[1]
    reference = model(**batch).logits
    for encoder, decoder in [
        (torch.arange(ls), torch.arange(lt)),  # (L,): shared by the batch
        (torch.arange(ls).expand(b, -1), torch.arange(lt)[None]),  # (B, L) and (1, L)
    ]:
        assert_close(model(**batch, position_ids=encoder, decoder_position_ids=decoder).logits, reference)


@pytest.mark.parametrize("pair", ENCODING_PAIRS, ids=pair_id)
def test_shifted_positions_move_exactly_the_encodings_that_read_absolute_positions(pair):
    """Before explicit positions were an input, a sinusoidal model given positions shifted by 7 returned the same
    logits (the argument went to **kwargs). Now the additive encodings move, and the offset-only ones must not."""
    model = tiny_model(**pair_kwargs(pair))
    batch = random_batch()
    ls, lt = batch["input_ids"].shape[1], batch["labels"].shape[1]
    reference = model(**batch).logits
    shifted = model(**batch, position_ids=torch.arange(ls) + 7, decoder_position_ids=torch.arange(lt) + 7).logits
    if any(reads_absolute_positions(name) for name in pair):
        assert (shifted - reference).abs().max() > 1e-3
    else:
        assert_close(shifted, reference, atol=1e-4)


@pytest.mark.parametrize("pe", ENCODINGS)
def test_each_example_reads_its_own_row_of_positions(pe):
    model = tiny_model(position_embedding_type=pe)
    batch = random_batch()
    (b, ls), lt = batch["input_ids"].shape, batch["labels"].shape[1]
    encoder = torch.stack([torch.arange(ls) + 3 * row for row in range(b)])
    decoder = torch.stack([torch.arange(lt) + 5 * row for row in range(b)])
    together = model(**batch, position_ids=encoder, decoder_position_ids=decoder).logits
    for row in range(b):
        alone = {name: value[row : row + 1] for name, value in batch.items()}
        logits = model(**alone, position_ids=encoder[row], decoder_position_ids=decoder[row]).logits
        assert_close(together[row : row + 1], logits)


@pytest.mark.parametrize("setup", SCORE_BIAS_SETUPS.values(), ids=SCORE_BIAS_SETUPS)
def test_the_long_input_path_reads_explicit_positions_as_the_dense_path_does(setup):
    batch = random_batch()
    (b, ls), lt = batch["input_ids"].shape, batch["labels"].shape[1]
    positions = {
        "position_ids": torch.stack([torch.arange(ls) * (row + 1) for row in range(b)]),  # not consecutive
        # restarting (two targets packed): the causal mask stays by token order, not by position
        "decoder_position_ids": torch.cat([torch.arange(4), torch.arange(lt - 4)]),
    }
    dense = tiny_model(chunked_attention="never", **setup)(**batch, **positions).logits
    chunked = tiny_model(chunked_attention="always", chunked_attention_block_size=4, **setup)(**batch, **positions)
    assert_close(chunked.logits, dense)


@pytest.mark.parametrize("pe", ENCODINGS)
def test_packed_sequences_encode_as_each_one_alone(pe):
    """Packing: two sources in one row, positions restarting at the second, a block-diagonal mask."""
    torch.manual_seed(0)
    encoder = LongCtxModel(tiny_config(position_embedding_type=pe)).eval().get_encoder()
    first, second = torch.randint(2, 99, (1, 6)), torch.randint(2, 99, (1, 5))
    segment = torch.tensor([0] * 6 + [1] * 5)
    mask = (segment[:, None] == segment[None, :])[None, None]  # (1, 1, 11, 11): each token sees its own source
    packed = encoder(
        input_ids=torch.cat([first, second], dim=1),
        attention_mask=mask,
        position_ids=torch.cat([torch.arange(6), torch.arange(5)]),
    ).last_hidden_state
    assert_close(packed[:, :6], encoder(input_ids=first).last_hidden_state)
    assert_close(packed[:, 6:], encoder(input_ids=second).last_hidden_state)


@pytest.mark.parametrize(
    "positions, pattern",
    [
        (torch.arange(5.0), r"`position_ids` must hold int64 \(or int32\) positions, got dtype torch.float32"),
        (torch.arange(5, dtype=torch.uint8), r"`position_ids` must hold int64 .* got dtype torch.uint8"),
        (torch.arange(4), r"`position_ids` has shape \(4,\) but `input_ids` has shape \(2, 5\)"),
        (torch.arange(5).expand(3, -1), r"`position_ids` has shape \(3, 5\) but `input_ids` has shape \(2, 5\)"),
        (torch.arange(5)[None, None], r"`position_ids` must have shape \(length,\) or \(batch or 1, length\)"),
        (torch.arange(5) - 1, r"`position_ids` holds negative positions \(lowest -1\)"),
    ],
)
def test_bad_positions_get_a_value_error_naming_them(positions, pattern):
    model = tiny_model()
    with pytest.raises(ValueError, match=pattern):
        model(input_ids=torch.randint(2, 99, (2, 5)), labels=torch.randint(2, 99, (2, 3)), position_ids=positions)


def test_learned_positions_past_the_table_are_refused_as_a_long_input_is():
    model = tiny_model(position_embedding_type="learned", max_position_embeddings=16)
    with pytest.raises(ValueError, match=r"max_position_embeddings`=16"):
        model(**random_batch(src_len=8), position_ids=torch.arange(8) + 10)


@pytest.mark.parametrize("pe", ["relative", "alibi", "rope", "sinusoidal"])
def test_decoder_positions_with_a_cache_hold_where_the_cache_keeps_them(pe):
    """Rotary and additive keys carry their positions into the cache, so cached decoding with explicit positions
    equals one full forward; a bias needs the cached keys' positions, which the cache does not keep: refused."""
    model = tiny_model(position_embedding_type=pe)
    batch = random_batch(batch=1, pad_last=False)
    decoder_ids = torch.randint(2, 99, (1, 4))
    positions = torch.arange(4) + 9
    full = model(input_ids=batch["input_ids"], decoder_input_ids=decoder_ids, decoder_position_ids=positions,
                 use_cache=False).logits  # fmt: skip
    encoder_outputs = model.get_encoder()(input_ids=batch["input_ids"])
    first = dict(encoder_outputs=encoder_outputs, decoder_input_ids=decoder_ids[:, :3],
                 decoder_position_ids=positions[:3], use_cache=True)  # fmt: skip
    if model.model.decoder._score_biases():  # the encoding, or `relative_bias` on top of it
        with pytest.raises(ValueError, match=r"`decoder_position_ids` with a cache"):
            model(**first)  # already the first step: the next ones could not read the keys' positions
        return
    step = dict(encoder_outputs=encoder_outputs, decoder_input_ids=decoder_ids[:, 3:], cache=model(**first).cache,
                decoder_position_ids=positions[3:], use_cache=True)  # fmt: skip
    assert_close(model(**step).logits, full[:, 3:])


def test_generate_runs_the_encoder_with_its_positions_once():
    """`generate(..., position_ids=...)` encodes with them; the decoding steps then get the encoder's outputs."""
    model = tiny_model(position_embedding_type="sinusoidal")
    input_ids = random_batch(batch=1, pad_last=False)["input_ids"]
    shifted = torch.arange(input_ids.shape[1]) + 20
    options = dict(max_new_tokens=6, do_sample=False, return_dict_in_generate=True, output_scores=True)
    generated = model.generate(input_ids=input_ids, position_ids=shifted, **options)
    encoder_outputs = model.get_encoder()(input_ids=input_ids, position_ids=shifted)
    reference = model.generate(encoder_outputs=encoder_outputs, **options)
    assert torch.equal(generated.sequences, reference.sequences)
    assert_close(torch.stack(generated.scores), torch.stack(reference.scores))
    default = model.generate(input_ids=input_ids, **options)  # the positions changed what the decoder read
    assert (torch.stack(generated.scores) - torch.stack(default.scores)).abs().max() > 1e-4


def test_encoder_positions_with_precomputed_encoder_outputs_are_refused():
    model = tiny_model()
    encoder_outputs = model.get_encoder()(input_ids=torch.randint(2, 99, (1, 5)))
    with pytest.raises(ValueError, match=r"`position_ids` are the encoder's, and `encoder_outputs` were computed"):
        model(encoder_outputs=encoder_outputs, labels=torch.randint(2, 99, (1, 3)), position_ids=torch.arange(5))


@pytest.mark.parametrize("kernel", [2, 3, 8])
def test_packed_sequences_with_the_encoder_convolution_encode_as_each_one_alone(kernel):
    """The convolution reads the tokens before each one in its own source only, where positions restart; per row."""
    torch.manual_seed(0)
    encoder = LongCtxModel(tiny_config(position_embedding_type="rope", encoder_conv_kernel=kernel)).eval().get_encoder()
    for layer in encoder.layers:
        torch.nn.init.normal_(layer.token_conv.weight)  # zeros at init would hide a leak
    first, second, third = torch.randint(2, 99, (1, 6)), torch.randint(2, 99, (1, 2)), torch.randint(2, 99, (1, 5))
    segment = torch.tensor([0] * 6 + [1] * 2 + [2] * 5)
    mask = (segment[:, None] == segment[None, :])[None, None]
    positions = torch.cat([torch.arange(6), torch.arange(2), torch.arange(5)])
    packed = encoder(input_ids=torch.cat([first, second, third], 1), attention_mask=mask, position_ids=positions)
    for part, source in zip((slice(0, 6), slice(6, 8), slice(8, 13)), (first, second, third), strict=True):
        assert_close(packed.last_hidden_state[:, part], encoder(input_ids=source).last_hidden_state)
    # per row: a batch of a packed row and a plain one, positions (B, L)
    plain = torch.randint(2, 99, (1, 13))
    batch_mask = torch.cat([mask, torch.ones_like(mask)])
    batch_positions = torch.stack([positions, torch.arange(13)])
    both = encoder(input_ids=torch.cat([torch.cat([first, second, third], 1), plain]), attention_mask=batch_mask,
                   position_ids=batch_positions).last_hidden_state  # fmt: skip
    assert_close(both[:1], packed.last_hidden_state)
    assert_close(both[1:], encoder(input_ids=plain).last_hidden_state)
