"""Bad input gets a ValueError that names the field and the fix."""

import pytest
import torch
from conftest import random_batch, tiny_config, tiny_model


@pytest.mark.parametrize(
    "overrides,pattern",
    [
        ({"d_model": 30, "num_heads": 4}, r"`d_model` \(30\) must be divisible by `num_heads` \(4\)"),
        ({"position_embedding_type": "fire"}, r"`position_embedding_type`='fire'.*valid values: sinusoidal, learned"),
        ({"decoder_position_embedding_type": "xpos"}, r"`decoder_position_embedding_type`='xpos'"),
        ({"position_embedding_type": "none"}, r"order-blind.*decoder_position_embedding_type"),
        ({"position_embedding_type": "rope", "d_model": 36, "num_heads": 4}, r"head dimension.*\(9\) must be even"),
        ({"rope_parameters": {"rope_type": "ntk-by-parts"}}, r"rope_type.*valid: default, linear, dynamic, yarn"),
        ({"rope_parameters": {"rope_type": "yarn"}}, r"needs a scaling `factor`"),
        ({"norm_type": "batchnorm"}, r"`norm_type`"),
        ({"sinusoidal_layout": "blocks"}, r"`sinusoidal_layout`"),
        ({"randomized_positions_max_length": 0}, r"`randomized_positions_max_length`"),
        (
            {
                "position_embedding_type": "learned",
                "max_position_embeddings": 64,
                "randomized_positions_max_length": 100,
            },
            r"exceeds the learned table",
        ),
        ({"activation_function": "swishy"}, r"`activation_function`='swishy' is unknown"),
        ({"rope_parameters": {"rope_type": "linear", "factor": -2.0}}, r"`rope_parameters\['factor'\]` must be > 0"),
        ({"chunked_attention": "sometimes"}, r"`chunked_attention`"),
        ({"chunked_attention_block_size": 0}, r"`chunked_attention_block_size`"),
        ({"alibi_max_penalty": 0.0}, r"`alibi_max_penalty` must be > 0 .* or None"),
        ({"cross_attention_logn_length": 1}, r"`cross_attention_logn_length` must be the training source length"),
    ],
)
def test_bad_config_raises_value_error_naming_the_field(overrides, pattern):
    with pytest.raises(ValueError, match=pattern):
        tiny_config(**overrides)


def test_input_longer_than_learned_table_says_which_encodings_extrapolate():
    model = tiny_model(position_embedding_type="learned", max_position_embeddings=16)
    with pytest.raises(ValueError, match=r"max_position_embeddings`=16.*sinusoidal, relative, alibi, rope"):
        model(**random_batch(src_len=17))


def test_decoder_longer_than_learned_table_raises_too():
    model = tiny_model(position_embedding_type="learned", max_position_embeddings=16)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(**random_batch(src_len=8, tgt_len=20))


@pytest.mark.parametrize("bad_id", [99, 1000, -1])
@pytest.mark.parametrize("where", ["input_ids", "decoder_input_ids"])
def test_token_ids_outside_the_vocabulary(bad_id, where):
    model = tiny_model()
    batch = random_batch()
    if where == "input_ids":
        batch["input_ids"][0, 3] = bad_id
    else:
        batch["decoder_input_ids"] = model.prepare_decoder_input_ids_from_labels(batch.pop("labels"))
        batch["decoder_input_ids"][1, 2] = bad_id
    with pytest.raises(ValueError, match=rf"`{where}` holds ids .*`vocab_size` is 99"):
        model(**batch)


def test_attention_mask_shape_must_match_input_ids():
    model = tiny_model()
    batch = random_batch()
    batch["attention_mask"] = batch["attention_mask"][:, :-1]
    with pytest.raises(ValueError, match=r"`attention_mask` has shape \(3, 10\) but `input_ids` has shape \(3, 11\)"):
        model(**batch)


def test_decoder_attention_mask_must_cover_the_decoder_tokens():
    model = tiny_model()
    batch = random_batch()
    batch["decoder_attention_mask"] = torch.ones(3, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="`decoder_attention_mask` covers 4 positions"):
        model(**batch)


def test_base_model_without_decoder_inputs_says_what_to_pass():
    from hf_longctx import LongCtxModel

    model = LongCtxModel(tiny_config())
    with pytest.raises(ValueError, match="decoder_input_ids"):
        model(input_ids=torch.tensor([[5, 6, 7]]))


@pytest.mark.parametrize("position", [0, -1])
def test_labels_outside_the_vocabulary_are_named_as_labels(position):
    model = tiny_model()
    batch = random_batch()
    batch["labels"][1, position] = 150
    with pytest.raises(ValueError, match=r"`labels` holds ids .*`vocab_size` is 99"):
        model(**batch)


def test_mask_shape_is_checked_with_inputs_embeds_too():
    model = tiny_model()
    batch = random_batch()
    embeds = model.get_input_embeddings()(batch.pop("input_ids"))
    batch["attention_mask"] = batch["attention_mask"][:, :-2]
    with pytest.raises(ValueError, match=r"`attention_mask` has shape \(3, 9\)"):
        model(inputs_embeds=embeds, **batch)
