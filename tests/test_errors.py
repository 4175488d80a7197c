"""Bad input gets a ValueError that names the field and the fix."""

import pytest
import torch
from conftest import random_batch, tiny_config, tiny_model

from hf_longctx import LongCtxConfig


@pytest.mark.parametrize(
    "overrides,pattern",
    [
        ({"d_model": 30, "num_heads": 4}, r"`d_model` \(30\) must be divisible by `num_heads` \(4\)"),
        ({"position_embedding_type": "fire"}, r"`position_embedding_type`='fire'.*valid values: sinusoidal, learned"),
        ({"decoder_position_embedding_type": "xpos"}, r"`decoder_position_embedding_type`='xpos'"),
        ({"position_embedding_type": "none"}, r"order-blind.*decoder_position_embedding_type"),
        ({"position_embedding_type": "rope", "d_model": 36, "num_heads": 4}, r"int\(9 \* 1.0\) = 9, must be even"),
        (
            {"position_embedding_type": "rope", "rope_parameters": {"partial_rotary_factor": 0.1}},
            r"int\(8 \* 0.1\) = 0, must be even and at least 2",
        ),
        ({"rope_parameters": {"partial_rotary_factor": 1.5}}, r"`rope_parameters\['partial_rotary_factor'\]`.*\(0, 1\]"),
        (
            {"position_embedding_type": "rope", "rope_parameters": {"rope_thetta": 500.0}},
            r"`rope_parameters` has 'rope_thetta', which rope_type='default' does not read; its keys: "
            r"partial_rotary_factor, rope_theta, rope_type",
        ),
        (
            {"position_embedding_type": "rope", "rope_parameters": {"rope_type": "linear", "factor": 2.0, "beta_fast": 8}},
            r"'beta_fast', which rope_type='linear' does not read",
        ),
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
        ({"rope_parameters": {"rope_type": "linear", "factor": -2.0}}, r"`rope_parameters\['factor'\]` .* must be >= 1"),
        ({"rope_parameters": {"rope_type": "yarn", "factor": 0.5}}, r"`rope_parameters\['factor'\]` .* must be >= 1"),
        ({"rope_parameters": {"rope_theta": 0.0}}, r"`rope_parameters\['rope_theta'\]` is RoPE's base and must be > 0"),
        (
            {"rope_parameters": {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": -10}},
            r"`rope_parameters\['original_max_position_embeddings'\]` is the trained length and must be >= 1",
        ),
        ({"layer_norm_eps": -1.0}, r"`layer_norm_eps` .* must be a finite number > 0, got -1.0"),
        ({"init_std": -0.02}, r"`init_std` .* must be a finite number > 0"),
        ({"sinusoidal_scale": float("inf")}, r"`sinusoidal_scale` .* must be a finite number > 0, got inf"),
        ({"decoder_output_scale": 0.0}, r"`decoder_output_scale` .* must be a finite number > 0"),
        ({"chunked_attention_min_length": 0}, r"`chunked_attention_min_length` is a key length"),
        ({"decoder_start_token_id": -3}, r"`decoder_start_token_id`=-3 is not a token of the vocabulary \(`vocab_size`=99\)"),
        ({"eos_token_id": [1, 500]}, r"`eos_token_id`=\[1, 500\] is not a token"),
        (
            {"position_embedding_type": "rope", "cross_attention_alignment": True, "relative_attention_num_buckets": 2},
            r"leaves the cross-attention no exact",
        ),
        (
            {"cross_attention_alignment": True, "cross_attention_alignment_max_distance": 2},
            r"`cross_attention_alignment_max_distance`=2 must exceed the 2 exact-distance buckets of the cross-attention",
        ),
        ({"cross_attention_alignment_max_distance": 8}, r"`cross_attention_alignment_max_distance`=8 .* which is off"),
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


@pytest.mark.parametrize("cache_implementation", ["dynamic", "static"])
def test_token_ids_outside_the_vocabulary_at_a_cached_step(cache_implementation):
    """Past the first decoding step the ids are checked where that costs no device sync (here, on CPU)."""
    from transformers import DynamicCache, EncoderDecoderCache, StaticCache

    model = tiny_model()
    batch = random_batch(tgt_len=4)
    decoder_input_ids = model.prepare_decoder_input_ids_from_labels(batch.pop("labels"))
    inputs = {**batch, "use_cache": True}
    if cache_implementation == "static":
        self_cache = StaticCache(config=model.config, max_cache_len=8)
        inputs["cache"] = EncoderDecoderCache(self_cache, DynamicCache(config=model.config))
    prefix = model(**inputs, decoder_input_ids=decoder_input_ids[:, :3])
    step = decoder_input_ids[:, 3:].clone()
    step[0, 0] = 99
    with pytest.raises(ValueError, match=r"`decoder_input_ids` holds ids .*`vocab_size` is 99"):
        model(**batch, decoder_input_ids=step, cache=prefix.cache, use_cache=True)


def test_decoder_ids_are_checked_except_generates_own_steps_on_an_accelerator(monkeypatch):
    """A host read per token is skipped only where the ids are the model's own (`generate` past its first step) and
    the read would sync an accelerator; a manual decoding loop keeps the check everywhere."""
    from hf_longctx import modeling_longctx

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert modeling_longctx.decoder_ids_need_check(False, cuda) and modeling_longctx.decoder_ids_need_check(False, cpu)
    seen = []
    original = modeling_longctx.decoder_ids_need_check

    def spy(first_step, device):
        seen.append((first_step, modeling_longctx._GENERATING.get(), original(first_step, cuda)))
        return original(first_step, device)

    monkeypatch.setattr(modeling_longctx, "decoder_ids_need_check", spy)
    model = tiny_model()
    batch = random_batch()
    model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=3)
    assert seen == [(True, True, True), (False, True, False), (False, True, False)]
    assert modeling_longctx._GENERATING.get() is False


@pytest.mark.parametrize("name", ["pad_token_id", "eos_token_id", "decoder_start_token_id"])
def test_generate_refuses_special_ids_outside_the_vocabulary(name):
    """`generate` feeds these to the decoder by itself (finished rows get the pad id): checked once, by name."""
    model = tiny_model()
    batch = random_batch()
    with pytest.raises(ValueError, match=rf"`{name}`=150 .*outside the vocabulary \[0, 98\]"):
        model.generate(input_ids=batch["input_ids"], max_new_tokens=3, **{name: 150})


def test_a_reset_static_cache_starts_a_first_step_again(monkeypatch):
    """A static cache reused after `reset()` reports a tensor length of 0: its next step is a first step again."""
    from transformers import DynamicCache, EncoderDecoderCache, StaticCache

    from hf_longctx import modeling_longctx

    first_steps = []
    original = modeling_longctx.decoder_ids_need_check
    monkeypatch.setattr(
        modeling_longctx, "decoder_ids_need_check", lambda first, device: first_steps.append(first) or original(first, device)
    )
    model = tiny_model()
    batch = random_batch(tgt_len=4)
    decoder_input_ids = model.prepare_decoder_input_ids_from_labels(batch.pop("labels"))
    cache = EncoderDecoderCache(StaticCache(config=model.config, max_cache_len=8), DynamicCache(config=model.config))
    prefix = model(**batch, decoder_input_ids=decoder_input_ids[:, :3], cache=cache, use_cache=True)
    model(**batch, decoder_input_ids=decoder_input_ids[:, 3:], cache=prefix.cache, use_cache=True)
    cache.reset()
    model(**batch, decoder_input_ids=decoder_input_ids[:, :2], cache=cache, use_cache=True)
    assert first_steps == [True, False, True]


def test_a_static_cache_longer_than_the_learned_table_is_refused_at_the_first_step():
    """The compiled decoding steps do not check lengths, so the static cache's slots are checked up front."""
    model = tiny_model(position_embedding_type="learned", max_position_embeddings=16)
    batch = random_batch()
    with pytest.raises(ValueError, match="max_position_embeddings`=16"):
        model.generate(input_ids=batch["input_ids"], max_new_tokens=20, cache_implementation="static")


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


# ------------------------------------------------------------------ nothing silent: config (issue 10)


@pytest.mark.parametrize(
    "overrides,pattern",
    [
        # misspelt fields: "did you mean", never the default in silence
        ({"position_embeddings_type": "rope"}, r"`position_embeddings_type` is not a field.*`position_embedding_type`"),
        ({"num_head": 8}, r"`num_head` is not a field.*did you mean `num_heads`"),
        ({"encoder_layer": 3}, r"did you mean `encoder_layers`"),
        # BART / T5 names that disagree with each other or with the field
        ({"encoder_attention_heads": 4, "decoder_attention_heads": 8}, r"`encoder_attention_heads`=4 and `decoder_attention_heads`=8 disagree"),
        ({"encoder_ffn_dim": 64, "decoder_ffn_dim": 128}, r"both set `d_ff`"),
        ({"num_heads": 8, "encoder_attention_heads": 2}, r"`encoder_attention_heads`=2 means `num_heads` here, which is also given as 8"),
        ({"d_kv": 16}, r"`d_kv`=16 .* d_model=32 and num_heads=4"),
        # sizes
        ({"d_model": 0}, r"`d_model` must be a positive integer, got 0"),
        ({"d_model": -8}, r"`d_model` must be a positive integer, got -8"),
        ({"vocab_size": 0}, r"`vocab_size` must be a positive integer"),
        ({"vocab_size": -5}, r"`vocab_size` must be a positive integer"),
        ({"num_heads": 0}, r"`num_heads` must be a positive integer"),
        ({"encoder_layers": -1}, r"`encoder_layers` must be a positive integer"),
        ({"decoder_layers": 0}, r"`decoder_layers` must be a positive integer"),
        ({"d_ff": 0}, r"`d_ff` must be a positive integer"),
        # dropouts
        ({"dropout": 1.5}, r"`dropout` is a probability .* \[0, 1\), got 1.5"),
        ({"attention_dropout": 1.0}, r"`attention_dropout` is a probability"),
        ({"activation_dropout": -0.1}, r"`activation_dropout` is a probability"),
        # T5 buckets the bucketing cannot represent
        ({"position_embedding_type": "relative", "relative_attention_num_buckets": 2}, r"`relative_attention_num_buckets`=2 leaves the encoder no exact-distance bucket"),
        ({"position_embedding_type": "alibi", "relative_bias": False, "decoder_position_embedding_type": "relative", "relative_attention_num_buckets": 1}, r"leaves the decoder no exact-distance bucket"),
        ({"position_embedding_type": "alibi", "relative_attention_num_buckets": 2}, r"`relative_attention_num_buckets`=2 leaves the encoder no exact-distance bucket"),  # its relative_bias
        ({"position_embedding_type": "relative", "relative_bias": True}, r"`relative_bias`=True adds T5's learned bias .*'relative' is that bias already"),
        ({"encoder_conv_kernel": -1}, r"`encoder_conv_kernel` is a number of tokens .* integer >= 0, got -1; 0 turns"),
        ({"alibi_learned_bias": True}, r"`alibi_learned_bias`=True is no longer a field of LongCtxConfig: it became `relative_bias`"),
        ({"position_embedding_type": "relative", "relative_attention_num_buckets": 32, "relative_attention_max_distance": 8}, r"`relative_attention_max_distance`=8 must exceed the 8 exact-distance buckets of the encoder"),
        ({"position_embedding_type": "relative", "relative_attention_num_buckets": 32, "relative_attention_max_distance": 16}, r"must exceed the 16 exact-distance buckets of the decoder"),
        ({"initializer": "xavier"}, r"`initializer`='xavier'"),
    ],
)
def test_bad_config_names_the_field_and_the_fix(overrides, pattern):
    with pytest.raises(ValueError, match=pattern):
        tiny_config(**overrides)


@pytest.mark.parametrize(
    "foreign,field,value",
    [
        ({"encoder_attention_heads": 8, "decoder_attention_heads": 8}, "num_heads", 8),
        ({"encoder_ffn_dim": 48, "decoder_ffn_dim": 48}, "d_ff", 48),
        ({"num_layers": 3}, "decoder_layers", 3),  # T5: num_decoder_layers defaults to num_layers
        ({"num_layers": 3, "num_decoder_layers": 1}, "decoder_layers", 1),
        ({"dropout_rate": 0.2}, "dropout", 0.2),
        ({"layer_norm_epsilon": 1e-6}, "layer_norm_eps", 1e-6),
        ({"d_kv": 64}, "d_model", 256),
        ({"feed_forward_proj": "gated-gelu"}, "gated_ffn", True),
        ({"hidden_size": 64}, "d_model", 64),
        ({"hidden_size": 64, "d_model": 64}, "d_model", 64),
        ({"num_attention_heads": 2}, "num_heads", 2),
    ],
)
def test_bart_and_t5_names_set_their_field(foreign, field, value):
    config = LongCtxConfig(vocab_size=99, **foreign)
    assert getattr(config, field) == value
    for name in foreign:
        assert name not in config.to_dict() or name == field  # stored once, under our name


def test_hf_config_keys_load_without_error_and_odd_keys_are_kept_with_a_warning(tmp_path, caplog):
    from transformers import AutoConfig

    import hf_longctx  # noqa: F401  (registers the config)

    config = tiny_config(position_embedding_type="alibi")
    config.save_pretrained(tmp_path)
    import json

    saved = json.loads((tmp_path / "config.json").read_text())
    saved |= {"architectures": ["LongCtxForConditionalGeneration"], "id2label": {"0": "a", "1": "b"}, "torch_dtype": "float32", "my_note": "kept"}
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with caplog.at_level("WARNING"):
        loaded = AutoConfig.from_pretrained(tmp_path)
    assert loaded.to_dict()["d_model"] == 32 and loaded.my_note == "kept"
    assert "`my_note` is not one of its fields" in caplog.text
    assert "architectures" not in caplog.text and "id2label" not in caplog.text


def test_generation_settings_given_to_the_config_are_named_where_they_go(caplog):
    """transformers 5 drops them from every model config (BART's too); they used to go without a word here."""
    with caplog.at_level("WARNING"):
        tiny_config(num_beams=4, max_length=20)  # 20: GenerationConfig's default, which says nothing
    assert "`num_beams`=4 is a generation setting" in caplog.text and "model.generation_config.num_beams" in caplog.text
    assert "max_length" not in caplog.text


def test_odd_head_dimension_is_fine_without_rope_and_names_rope_with_it():
    assert tiny_config(d_model=60, num_heads=4, position_embedding_type="alibi").head_dim == 15
    with pytest.raises(ValueError, match="rope"):
        tiny_config(d_model=60, num_heads=4, position_embedding_type="rope")


@pytest.mark.parametrize(
    "overrides,named",
    [
        ({"position_embedding_type": "alibi", "rope_parameters": {"rope_type": "yarn", "factor": 4.0}}, "`rope_parameters`"),
        ({"position_embedding_type": "rope", "relative_bias": False, "relative_attention_num_buckets": 16}, "`relative_attention_num_buckets`"),
        ({"position_embedding_type": "relative", "alibi_max_penalty": 30.0}, "`alibi_max_penalty`"),
        ({"position_embedding_type": "alibi", "sinusoidal_scale": 0.02}, "`sinusoidal_scale`"),
        ({"initializer": "fan_in", "init_std": 0.1}, "`init_std`=0.1 does nothing with initializer='fan_in'"),
        # warned, not refused: a saved config keeps them, and from_pretrained(..., chunked_attention=...) must load it
        ({"chunked_attention": "always", "chunked_attention_min_length": 16},
         "`chunked_attention_min_length`=16 does nothing with chunked_attention='always'"),
        ({"chunked_attention": "never", "chunked_attention_block_size": 64},
         "`chunked_attention_block_size`=64 does nothing with chunked_attention='never'"),
    ],
)  # fmt: skip
def test_options_the_encoding_never_reads_are_warned_about(overrides, named, caplog):
    import logging

    import transformers.utils.logging  # noqa: F401  (adds Logger.warning_once, an lru_cache)

    logging.Logger.warning_once.cache_clear()  # an earlier test may have said the same once already
    with caplog.at_level("WARNING"):
        LongCtxConfig(vocab_size=99, **overrides)
    assert named in caplog.text and "does nothing with" in caplog.text


# ---------------------------------------------------------- nothing silent: inputs and caches (issue 10)


def _ids(*shape, dtype=torch.long):
    return torch.full(shape, 5, dtype=dtype)


@pytest.mark.parametrize(
    "inputs,pattern",
    [
        (dict(input_ids=_ids(2, 0), labels=_ids(2, 3)), r"`input_ids` has length 0"),
        (dict(input_ids=_ids(2, 5), decoder_input_ids=_ids(2, 0)), r"`decoder_input_ids` has length 0"),
        (dict(input_ids=_ids(2, 5), labels=_ids(2, 0)), r"`labels` has length 0"),
        (dict(input_ids=_ids(0, 5), labels=_ids(0, 3)), r"`(labels|input_ids)` holds a batch of 0 examples"),
        (dict(input_ids=_ids(5), labels=_ids(1, 3)), r"`input_ids` must have shape \(batch, length\), got \(5,\); add the batch dimension"),
        (dict(input_ids=_ids(1, 5), labels=_ids(3)), r"`labels` must have shape \(batch, length\)"),
        (dict(input_ids=_ids(1, 5, dtype=torch.float32), labels=_ids(1, 3)), r"`input_ids` must hold integer token ids, got dtype torch.float32"),
        (dict(input_ids=_ids(1, 5), decoder_input_ids=_ids(1, 3, dtype=torch.float64)), r"`decoder_input_ids` must hold integer token ids"),
        (dict(decoder_input_ids=_ids(1, 3)), r"Nothing to encode: pass `input_ids` \(or `inputs_embeds`\).*`encoder_outputs`"),
        (dict(inputs_embeds=torch.zeros(1, 5), labels=_ids(1, 3)), r"`inputs_embeds` must have shape \(batch, length, d_model\)"),
    ],
)
def test_bad_inputs_get_a_value_error_naming_the_argument(inputs, pattern):
    with pytest.raises(ValueError, match=pattern):
        tiny_model()(**inputs)


@pytest.mark.parametrize("conv", [0, 3])  # the encoder convolution reads the padding from the 4-D mask too
def test_model_accepts_the_4d_mask_the_encoder_accepts(conv):
    from hf_longctx import LongCtxModel

    torch.manual_seed(0)
    model = LongCtxModel(tiny_config(encoder_conv_kernel=conv)).eval()
    batch = random_batch(pad_last=True)
    mask_2d = batch["attention_mask"].bool()
    mask_4d = mask_2d[:, None, None, :] & mask_2d[:, None, :, None]  # (B, 1, S, S)
    decoder_input_ids = torch.tensor([[0, 5, 6]] * 3)
    with torch.no_grad():
        reference = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], decoder_input_ids=decoder_input_ids)
        out = model(input_ids=batch["input_ids"], attention_mask=mask_4d, decoder_input_ids=decoder_input_ids)
    real = mask_2d  # padded encoder positions differ (their rows are masked differently): compare the real ones
    torch.testing.assert_close(out.encoder_last_hidden_state[real], reference.encoder_last_hidden_state[real])
    torch.testing.assert_close(out.last_hidden_state, reference.last_hidden_state)


def test_a_plain_dynamic_cache_decodes_as_the_full_forward():
    from transformers import DynamicCache

    model = tiny_model()
    batch = random_batch()
    decoder_input_ids = torch.tensor([[0, 5, 6, 7]] * 3)
    with torch.no_grad():
        encoder_outputs = model.get_encoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        full = model(encoder_outputs=encoder_outputs, attention_mask=batch["attention_mask"], decoder_input_ids=decoder_input_ids).logits
        cache, steps = DynamicCache(config=model.config), []
        for t in range(4):
            out = model(
                encoder_outputs=encoder_outputs,
                attention_mask=batch["attention_mask"],
                decoder_input_ids=decoder_input_ids[:, t : t + 1],
                cache=cache,
                use_cache=True,
            )
            steps.append(out.logits)
    assert cache.get_seq_length() == 4  # the decoded tokens only: no cross-attention keys appended
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "make_inputs,pattern",
    [
        (lambda: dict(**random_batch(src_len=17)), r"The encoder input \(`input_ids`\) has 17 tokens.*truncate the source"),
        (lambda: dict(**random_batch(src_len=8, tgt_len=20)), r"The decoder input \(`labels` or `decoder_input_ids`\) has 20 tokens.*truncate the targets"),
    ],
)
def test_learned_table_error_says_which_side_ran_out(make_inputs, pattern):
    model = tiny_model(position_embedding_type="learned", max_position_embeddings=16)
    with pytest.raises(ValueError, match=pattern):
        model(**make_inputs())


def test_learned_table_error_in_generate_names_max_new_tokens():
    model = tiny_model(position_embedding_type="learned", max_position_embeddings=16)
    model.generation_config.eos_token_id = None  # decode until the length limit
    batch = random_batch(src_len=8)
    with pytest.raises(ValueError, match=r"Decoding reached output position 17.*`max_new_tokens`"):
        model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=30)


def test_generate_with_flex_attention_on_cpu_names_the_working_backends():
    model = tiny_model(attn_implementation="flex_attention")
    with pytest.raises(ValueError, match=r"flex_attention.*does not run on CPU.*'sdpa'.*'eager'"):
        model.generate(input_ids=torch.tensor([[5, 6, 7]]), max_new_tokens=3)


def test_bart_and_marian_config_dicts_load_with_their_sizes():
    from transformers import BartConfig, MarianConfig

    for family in (BartConfig, MarianConfig):
        values = family(vocab_size=99, d_model=32, encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, encoder_layers=2, decoder_layers=2, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, bos_token_id=0).to_dict()
        values.pop("model_type")
        config = LongCtxConfig(**values)  # encoder_layerdrop & co: theirs, kept with a warning, not "did you mean"
        assert (config.num_heads, config.d_ff, config.encoder_layers) == (4, 64, 2)


@pytest.mark.parametrize(
    "overrides, pattern",
    [
        ({"attention_scale": 0.0}, r"`attention_scale` multiplies q.k and must be > 0"),
        ({"feed_forward_proj": 3}, r"`feed_forward_proj` is T5's"),
        ({"feed_forward_proj": "gated-gelu", "activation_function": "relu"}, r"`feed_forward_proj`='gated-gelu' means activation_function='gelu_new'"),
    ],
)
def test_more_bad_config_values(overrides, pattern):
    with pytest.raises(ValueError, match=pattern):
        tiny_config(**overrides)


@pytest.mark.parametrize(
    "kwargs, check",
    [
        ({"dropout": 1.5}, r"`dropout` is a probability"),
        ({"position_embedding_type": "bogus"}, r"`position_embedding_type`='bogus'"),
        ({"relative_attention_num_buckets": 2, "position_embedding_type": "relative"}, r"no exact-distance bucket"),
    ],
)
def test_from_pretrained_keyword_arguments_meet_the_same_checks(kwargs, check, tmp_path):
    from transformers import AutoConfig

    tiny_config().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=check):
        AutoConfig.from_pretrained(tmp_path, **kwargs)
    assert AutoConfig.from_pretrained(tmp_path, num_layers=3).encoder_layers == 3
    assert AutoConfig.from_pretrained(tmp_path, cross_attention_logn_length=64).cross_attention_logn_length == 64


def test_the_long_input_path_is_not_an_attn_implementation_to_choose():
    model = tiny_model(attn_implementation="sdpa")
    model.config._attn_implementation = "longctx_chunked"  # what set_attn_implementation would accept by name
    with pytest.raises(ValueError, match=r"'longctx_chunked' is hf_longctx's long-input path, which its stacks choose"):
        model(**random_batch())


@pytest.mark.parametrize(
    "extra,pattern",
    [
        ({"attention_masks": None}, r"unexpected keyword argument `attention_masks`; did you mean `attention_mask`\?"),
        ({"decoder_attention_maks": None}, r"did you mean `decoder_attention_mask`\?"),
        ({"head_mask": None}, r"got `head_mask`: this model has no head masking"),
        ({"token_type_ids": None}, r"got `token_type_ids`: this model has no token types"),
        ({"frobnicate": 3}, r"unexpected keyword argument `frobnicate`; it takes: input_ids, attention_mask"),
    ],
)
def test_a_keyword_the_model_does_not_read_is_refused_not_dropped(extra, pattern):
    """HF's models swallow unknown keywords (`**kwargs`): a misspelt mask would run the batch unmasked."""
    model = tiny_model()
    batch = random_batch()
    with pytest.raises(TypeError, match=pattern):
        model(**batch, **extra)
    with pytest.raises(TypeError, match=r"LongCtxEncoder.forward\(\) got an unexpected keyword argument `attention_maks`"):
        model.get_encoder()(batch["input_ids"], attention_maks=batch["attention_mask"])
    assert model(**batch, output_attentions=False, output_hidden_states=True, return_dict=True).loss is not None


def test_labels_and_decoder_inputs_of_different_lengths_are_refused_by_name():
    model = tiny_model()
    batch = random_batch(tgt_len=7)
    with pytest.raises(ValueError, match=r"`labels` has shape \(3, 7\) but `decoder_input_ids` covers \(3, 3\)"):
        model(**batch, decoder_input_ids=batch["labels"][:, :3].clamp(min=0))
