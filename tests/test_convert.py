"""Conversion of BART, T5 (original and v1.1) and Marian into hf_longctx: exact parity against the HF reference.

References are tiny HF models built locally from small configs, every parameter and buffer drawn from a seeded
normal (LayerNorm weights and biases, final logits bias and position tables included), so a missed mapping or a
wrong option cannot agree by accident. Marian's sinusoid table is the one exception: it is a formula, not a weight.
"""

import functools
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import (
    AutoModelForSeq2SeqLM,
    BartConfig,
    BartForConditionalGeneration,
    MarianConfig,
    MarianMTModel,
    MBartConfig,
    MBartForConditionalGeneration,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)

from hf_longctx import LongCtxForConditionalGeneration
from hf_longctx.conversion.convert import convert_model, convert_pretrained

CONVERT_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "convert.py"
VOCAB = 99
# A seed whose random references generate input-dependent sequences in every family (random post-norm models often
# repeat one token whatever the input, which would make generate parity a weak test).
REFERENCE_SEED = 3
BART_SIZES = dict(
    vocab_size=VOCAB,
    d_model=32,
    encoder_layers=2,
    decoder_layers=2,
    encoder_attention_heads=4,
    decoder_attention_heads=4,
    encoder_ffn_dim=64,
    decoder_ffn_dim=64,
    max_position_embeddings=64,
    dropout=0.0,
)
T5_SIZES = dict(
    vocab_size=VOCAB,
    d_model=32,
    d_kv=8,
    num_heads=4,
    num_layers=2,
    d_ff=64,
    dropout_rate=0.0,
    decoder_start_token_id=0,
    relative_attention_num_buckets=8,
    relative_attention_max_distance=20,  # not T5's 128: the converter maps it
)


def bart(**overrides):
    # layerdrop is training-only: the converter accepts it
    config = dict(BART_SIZES, scale_embedding=True, encoder_layerdrop=0.1, forced_eos_token_id=2)
    return BartForConditionalGeneration(BartConfig(**{**config, **overrides}))


def t5(**overrides):
    return T5ForConditionalGeneration(T5Config(**{**T5_SIZES, **overrides}))


def t5_v1_1(**overrides):
    model = t5(feed_forward_proj="gated-gelu", tie_word_embeddings=False, **overrides)
    # transformers 5 builds every T5 tied; a v1.1 checkpoint unties the head on load. Do the same here.
    model.lm_head.weight = nn.Parameter(model.shared.weight.detach().clone())
    return model


def marian(**overrides):
    config = dict(
        BART_SIZES,
        scale_embedding=True,
        activation_function="swish",  # as the opus-mt checkpoints
        pad_token_id=VOCAB - 1,
        decoder_start_token_id=VOCAB - 1,
        eos_token_id=0,
        forced_eos_token_id=0,
    )
    return MarianMTModel(MarianConfig(**{**config, **overrides}))


FAMILIES = {"bart": bart, "t5": t5, "t5_v1_1": t5_v1_1, "marian": marian}


def randomized(model: nn.Module, seed: int = REFERENCE_SEED) -> nn.Module:
    """Every parameter and buffer redrawn from a seeded normal: norm weights 1 + N(0, 0.2^2), biases (and the final
    logits bias) N(0, 0.1^2), matrices N(0, 0.3^2), so outputs depend on the input. Marian's fixed sinusoids stay
    the formula."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if "embed_positions" in name and isinstance(model, MarianMTModel):
                continue
            noise = torch.randn(tensor.shape, generator=generator)
            if tensor.dim() == 1 and "norm" in name:
                tensor.copy_(1 + 0.2 * noise if name.endswith("weight") else 0.1 * noise)
            elif tensor.dim() == 1 or name == "final_logits_bias":
                tensor.copy_(0.1 * noise)
            else:
                tensor.copy_(0.3 * noise)
    return model.eval()


@functools.cache
def reference_and_converted(family: str):
    torch.manual_seed(0)
    reference = randomized(FAMILIES[family]())
    return reference, convert_model(reference).eval()


def padded_batch(pad_token_id: int):
    """Three rows, the later ones right-padded; labels with an ignored (-100) tail in the last row."""
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(3, VOCAB - 1, (3, 12), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 9:] = 0
    attention_mask[2, 5:] = 0
    labels = torch.randint(3, VOCAB - 1, (3, 8), generator=generator)
    labels[2, 6:] = -100
    return {
        "input_ids": input_ids.masked_fill(attention_mask == 0, pad_token_id),
        "attention_mask": attention_mask,
        "labels": labels,
    }


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_and_loss_match_the_reference(family):
    reference, converted = reference_and_converted(family)
    assert type(converted) is LongCtxForConditionalGeneration
    batch = padded_batch(reference.config.pad_token_id)
    with torch.no_grad():
        expected, actual = reference(**batch), converted(**batch)
    assert expected.logits.std() > 0.05, "a degenerate reference would make parity meaningless"
    torch.testing.assert_close(actual.logits, expected.logits, atol=1e-5, rtol=0)
    assert abs(actual.loss.item() - expected.loss.item()) <= 1e-5


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("num_beams", [1, 3], ids=["greedy", "beam3"])
def test_generate_matches_the_reference_with_the_cache(family, num_beams):
    reference, converted = reference_and_converted(family)
    assert converted.generation_config.to_dict() == reference.generation_config.to_dict()
    batch = padded_batch(reference.config.pad_token_id)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    options = dict(max_new_tokens=10, num_beams=num_beams, do_sample=False, use_cache=True)
    expected = reference.generate(**inputs, **options)
    actual = converted.generate(**inputs, **options)
    assert len({tuple(row) for row in expected.tolist()}) > 1, "the reference's outputs depend on its input"
    assert torch.equal(actual, expected)


def test_t5_output_scale_and_tying_follow_the_checkpoint():
    original, v1_1 = reference_and_converted("t5")[1], reference_and_converted("t5_v1_1")[1]
    assert original.config.decoder_output_scale == 32**-0.5 and original.config.tie_word_embeddings
    assert original.lm_head.weight is original.model.shared.weight
    assert v1_1.config.decoder_output_scale == 1.0 and not v1_1.config.tie_word_embeddings
    assert v1_1.config.gated_ffn and v1_1.config.activation_function == "gelu_new"


def _save_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit

    backend = Tokenizer(WordLevel({f"w{i}": i for i in range(VOCAB)}, unk_token="w3"))
    backend.pre_tokenizer = WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="w3").save_pretrained(folder)


@pytest.mark.parametrize("family", FAMILIES)
def test_script_folder_round_trip(family, tmp_path):
    reference, converted = reference_and_converted(family)
    source, output = tmp_path / "source", tmp_path / "converted"
    reference.save_pretrained(source)
    _save_tokenizer(source)
    runpy.run_path(str(CONVERT_SCRIPT), run_name="convert_script")["main"]([str(source), str(output)])

    loaded = AutoModelForSeq2SeqLM.from_pretrained(output).eval()
    assert type(loaded) is LongCtxForConditionalGeneration
    batch = padded_batch(reference.config.pad_token_id)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, reference(**batch).logits, atol=1e-5, rtol=0)
        assert torch.equal(loaded(**batch).logits, converted(**batch).logits)
    for name in ("decoder_start_token_id", "forced_eos_token_id", "eos_token_id", "pad_token_id"):
        assert getattr(loaded.generation_config, name) == getattr(reference.generation_config, name), name
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "max_new_tokens": 6}
    assert torch.equal(loaded.generate(**inputs), reference.generate(**inputs))
    assert (output / "model.safetensors").is_file() and (output / "modeling_longctx.py").is_file()
    assert (output / "tokenizer.json").read_bytes() == (source / "tokenizer.json").read_bytes()
    card = (output / "README.md").read_text()
    assert type(reference).__name__ in card and f"conversion of `{source.name}`" in card
    assert str(tmp_path) not in card  # the folder's name, not this machine's path


def test_convert_pretrained_takes_a_folder_or_a_model(tmp_path):
    reference, converted = reference_and_converted("bart")
    reference.save_pretrained(tmp_path)
    batch = padded_batch(reference.config.pad_token_id)
    with torch.no_grad():
        from_folder = convert_pretrained(tmp_path).eval()(**batch).logits
        from_model = convert_pretrained(reference).eval()(**batch).logits
    assert torch.equal(from_folder, converted(**batch).logits) and torch.equal(from_model, from_folder)


def _untied_encoder_embeddings():
    model = randomized(bart())
    model.model.encoder.embed_tokens = nn.Embedding(VOCAB, 32)  # differs from `shared`, which hf_longctx ties
    return model


def _modified_marian_table():
    model = marian()
    with torch.no_grad():
        model.model.encoder.embed_positions.weight[3] += 1.0
    return model


UNSUPPORTED = {
    "bart heads": (lambda: bart(decoder_attention_heads=2), "decoder_attention_heads"),
    "bart ffn": (lambda: bart(decoder_ffn_dim=32), "decoder_ffn_dim"),
    "bart pre-norm flags": (lambda: bart(add_final_layer_norm=True), "add_final_layer_norm"),
    "bart untied input embeddings": (_untied_encoder_embeddings, "model.encoder.embed_tokens.weight"),
    "t5 attention width": (lambda: t5(d_kv=16), "d_kv"),
    "marian separate vocabularies": (
        lambda: marian(share_encoder_decoder_embeddings=False),
        "share_encoder_decoder_embeddings",
    ),
    "marian modified sinusoids": (_modified_marian_table, "model.encoder.embed_positions.weight"),
    "unknown class": (
        lambda: MBartForConditionalGeneration(MBartConfig(**BART_SIZES)),
        "MBartForConditionalGeneration",
    ),
}


@pytest.mark.parametrize("case", UNSUPPORTED)
def test_unsupported_sources_raise_naming_the_field(case):
    build, field = UNSUPPORTED[case]
    with pytest.raises(ValueError, match=f"`?{field}`?"):
        convert_model(build())


def test_script_reports_an_unsupported_source_and_exits_2(tmp_path):
    t5(d_kv=16).save_pretrained(tmp_path / "source")
    result = subprocess.run(
        [sys.executable, str(CONVERT_SCRIPT), str(tmp_path / "source"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2, result.stderr
    assert "`d_kv`=16" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_source_that_is_not_a_model_folder_is_named_not_read_as_a_hub_id(tmp_path):
    """A mistyped SOURCE_DIR used to end in a hub error about repo ids (an OSError traceback)."""
    from hf_longctx.conversion.convert import convert_folder

    with pytest.raises(ValueError, match=r"missing is not a model folder \(no config.json\)"):
        convert_folder(tmp_path / "missing", tmp_path / "out")
    assert not (tmp_path / "out").exists()
