"""`cross_attention_alignment`: positions in the cross-attention along each head's diagonal (issue "Outputs longer
than trained"). Off by default; on, it is a bias of the decoder position and the encoder mask only, so it must agree
with cached decoding, padding, beam search, the long-input path and save / load like every other part."""

import pytest
import torch
from conftest import ENCODING_PAIRS, decode_step_by_step, random_batch, tiny_config, tiny_model
from test_modeling import assert_same, pair_id, pair_kwargs

from hf_longctx import LongCtxForConditionalGeneration
from hf_longctx.positions import CrossAttentionAlignment


def test_off_by_default_and_a_fresh_table_starts_one_head_per_diagonal_on_it():
    plain = tiny_model()
    assert plain.config.cross_attention_alignment is False and plain.model.decoder.cross_alignment is None
    aligned = LongCtxForConditionalGeneration(tiny_config(
        cross_attention_alignment=True, relative_attention_num_buckets=32, relative_attention_max_distance=128
    ))
    bias = aligned.model.decoder.cross_alignment(torch.tensor([3]), None, 40)[0, :, 0]  # (H, Ls): step 3, 40 tokens
    j = torch.arange(40)
    # weights e^-|offset| around each diagonal (buckets of one offset up to 16 here; the farthest share the last)
    assert torch.equal(bias[0], -(j - 3).abs().clamp(max=15).float()), "the first forward head: j = t"
    assert torch.equal(bias[2], -(39 - j - 3).abs().clamp(max=15).float()), "the first backward head: j = n - 1 - t"
    assert bias[1].abs().max() == 0 and bias[3].abs().max() == 0, "the others start as content heads"
    same = tiny_config(relative_attention_num_buckets=32, relative_attention_max_distance=128)
    missing = aligned.load_state_dict(LongCtxForConditionalGeneration(same).state_dict(), strict=False)[0]
    assert missing == ["model.decoder.cross_alignment.weight"], "its only parameter"


@pytest.mark.parametrize("padding", ["right", "left"])
def test_each_head_attends_along_its_diagonal_at_any_length(padding):
    """With a table peaked at offset 0 and no content scores, heads 0-1 attend source token t at decoder step t and
    heads 2-3 token n - 1 - t, counted over each example's own tokens, far past any trained length."""
    model = tiny_model(cross_attention_alignment=True, attn_implementation="eager")
    alignment = model.model.decoder.cross_alignment
    with torch.no_grad():
        alignment.weight.zero_()
        alignment.weight[0] = 50.0  # bucket 0: offset 0 exactly
        for layer in model.model.decoder.layers:
            layer.encoder_attn.q_proj.weight.zero_()  # scores from the bias alone
            layer.encoder_attn.q_proj.bias.zero_()
    source, lengths = 300, [300, 217]
    ids = torch.randint(2, 99, (2, source))
    mask = torch.zeros(2, source, dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1 if padding == "right" else 0
        if padding == "left":
            mask[row, source - n :] = 1
    decoder_ids = torch.randint(2, 99, (2, 200))
    out = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids, output_attentions=True)
    weights = out.cross_attentions[-1]  # (B, H, Lt, Ls)
    t = torch.arange(200)
    for row, n in enumerate(lengths):
        first = 0 if padding == "right" else source - n  # where the example's tokens start
        assert torch.equal(weights[row, :2].argmax(-1), (first + t).expand(2, -1))
        assert torch.equal(weights[row, 2:].argmax(-1), (first + n - 1 - t).expand(2, -1))
        assert weights[row, :, :, :first].sum() == 0 and weights[row, :, :, first + n :].sum() == 0, "padding"


@pytest.mark.parametrize("pair", ENCODING_PAIRS, ids=pair_id)
def test_cached_decoding_and_padding_agree_with_every_self_attention_encoding(pair):
    model = tiny_model(**pair_kwargs(pair), cross_attention_alignment=True)
    batch = random_batch(tgt_len=8)
    decoder_input_ids = model.prepare_decoder_input_ids_from_labels(batch["labels"])
    full = model(batch["input_ids"], attention_mask=batch["attention_mask"], decoder_input_ids=decoder_input_ids).logits
    assert_same(decode_step_by_step(model, batch, decoder_input_ids)[0], full)
    for row in range(3):  # a padded example decodes as it would alone: the diagonals count its own tokens
        n = int(batch["attention_mask"][row].sum())
        alone = model(input_ids=batch["input_ids"][row : row + 1, :n], decoder_input_ids=decoder_input_ids[row : row + 1])
        assert_same(full[row : row + 1], alone.logits)


def test_generate_with_beams_and_a_static_cache_matches_uncached():
    model = tiny_model(cross_attention_alignment=True)
    batch = random_batch()
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    cached = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert torch.equal(cached, model.generate(**inputs, max_new_tokens=6, do_sample=False, use_cache=False))
    assert torch.equal(cached, model.generate(**inputs, max_new_tokens=6, do_sample=False, cache_implementation="static"))
    beams = {"max_new_tokens": 6, "num_beams": 3, "do_sample": False}
    assert torch.equal(model.generate(**inputs, **beams), model.generate(**inputs, **beams, use_cache=False))


def test_the_long_input_path_and_gradients_and_save_load(tmp_path):
    dense = tiny_model(cross_attention_alignment=True, chunked_attention="never")
    chunked = tiny_model(cross_attention_alignment=True, chunked_attention="always", chunked_attention_block_size=4)
    chunked.load_state_dict(dense.state_dict())
    batch = random_batch(src_len=20)
    assert_same(chunked(**batch).logits, dense(**batch).logits)
    dense.train()
    dense(**batch).loss.backward()
    assert dense.model.decoder.cross_alignment.weight.grad.abs().sum() > 0, "the table learns"
    dense.eval().save_pretrained(tmp_path)
    reloaded = LongCtxForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert isinstance(reloaded.model.decoder.cross_alignment, CrossAttentionAlignment)
    assert torch.equal(reloaded(**batch).logits, dense(**batch).logits), "the table is in the checkpoint"


def test_offsets_past_the_max_distance_share_the_last_bucket_of_their_side():
    """So a source longer than the training ones meets only buckets that training reached."""
    alignment = CrossAttentionAlignment(tiny_config(cross_attention_alignment=True, cross_attention_alignment_max_distance=12))
    with torch.no_grad():
        alignment.weight.copy_(torch.arange(8.0)[:, None].expand(-1, 4))  # each bucket's value is its index
    bias = alignment(torch.tensor([0]), None, 1000)[0, 0, 0]  # forward head, decoder step 0: bias of offset j
    assert bias[12:].unique().tolist() == [7.0], "the last bucket of the positive side"
    assert len(bias[:12].unique()) == 4, "nearer offsets tell apart the side's four buckets"
