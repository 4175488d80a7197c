"""Context extension: each method changes what it documents, and nothing else."""

import pytest
import torch
from conftest import random_batch, tiny_model

from hf_longctx import LongCtxForConditionalGeneration
from hf_longctx.cli import extend_main
from hf_longctx.conversion.extend import extend_context, grow_table


def test_grow_table_copy_tiles_and_interpolate_keeps_the_ends():
    table = torch.randn(4, 3)
    tiled = grow_table(table, 10, "copy")
    assert torch.equal(tiled[4:8], table) and torch.equal(tiled[8:], table[:2])
    smooth = grow_table(table, 7, "interpolate")  # old row j lands at new row 2j
    assert torch.allclose(smooth[::2], table) and torch.allclose(smooth[1], (table[0] + table[1]) / 2)


@pytest.mark.parametrize("method", ["copy", "interpolate"])
def test_learned_table_grows_and_short_inputs_are_unchanged(method, tmp_path):
    model = tiny_model(position_embedding_type="learned", max_position_embeddings=16)
    short = random_batch(src_len=12)
    before = model(**short).logits
    extended = extend_context(model, 64, method)
    assert extended.config.max_position_embeddings == 64
    if method == "copy":  # the first rows are the old table: short inputs see the same model
        assert torch.allclose(extended(**short).logits, before)
    assert torch.isfinite(extended(**random_batch(src_len=60)).logits).all()
    extended.save_pretrained(tmp_path)
    reloaded = LongCtxForConditionalGeneration.from_pretrained(tmp_path)
    assert torch.equal(reloaded(**short).logits, extended(**short).logits)


@pytest.mark.parametrize("encoding", ["alibi", "relative"])
def test_learned_can_switch_to_an_encoding_that_runs_at_any_length(encoding):
    model = tiny_model(position_embedding_type="learned", max_position_embeddings=16)
    switched = extend_context(model, 4096, encoding)
    assert switched.config.position_embedding_type == encoding
    assert torch.equal(switched.model.shared.weight, model.model.shared.weight)
    assert torch.isfinite(switched(**random_batch(src_len=100)).logits).all()
    assert switched.model.encoder.relative_bias is None  # as trained: the switch adds no table (alibi's default)


def test_a_learned_model_with_relative_bias_keeps_it_on_alibi_and_refuses_relative():
    model = tiny_model(position_embedding_type="learned", max_position_embeddings=16, relative_bias=True)
    switched = extend_context(model, 4096, "alibi")
    trained = model.model.encoder.relative_bias.relative_attention_bias.weight
    assert torch.equal(switched.model.encoder.relative_bias.relative_attention_bias.weight, trained)
    with pytest.raises(ValueError, match="switching to 'relative' would give it two bucket tables"):
        extend_context(model, 4096, "relative")


@pytest.mark.parametrize("method", ["linear", "dynamic", "yarn"])
def test_rope_scaling_sets_the_factor_from_the_lengths(method):
    model = tiny_model(position_embedding_type="rope")
    batch = random_batch(src_len=40)
    before = model(**batch).logits
    extended = extend_context(model, 64, method, trained_length=16)
    assert extended.config.rope_parameters["rope_type"] == method
    assert extended.config.rope_parameters["factor"] == 4.0
    assert extended.model.encoder.position.rope_type == method
    assert not torch.allclose(extended(**batch).logits, before), "positions past 16 are rescaled"


def test_wrong_method_or_missing_trained_length_is_a_value_error():
    with pytest.raises(ValueError, match="does not apply to position_embedding_type='alibi'"):
        extend_context(tiny_model(position_embedding_type="alibi"), 64, "copy")
    with pytest.raises(ValueError, match="`trained_length` is needed"):
        extend_context(tiny_model(position_embedding_type="rope"), 64, "yarn")


def test_extend_script_extends_fine_tunes_and_evaluates(tmp_path):
    import json

    from hf_longctx.data.tokenization import build_tokenizer

    tokenizer = build_tokenizer()
    model = tiny_model(position_embedding_type="learned", max_position_embeddings=32, vocab_size=len(tokenizer))
    model.save_pretrained(tmp_path / "short")
    with pytest.raises(ValueError, match="has no tokenizer"):
        extend_main(["--model", str(tmp_path / "short"), "--output_dir", str(tmp_path / "x"), "--target_length", "48", "--method", "copy"])
    tokenizer.save_pretrained(tmp_path / "short")
    out = tmp_path / "long"
    extend_main(
        ["--model", str(tmp_path / "short"), "--output_dir", str(out), "--target_length", "48", "--method", "copy",
         "--finetune_steps", "2", "--eval_lengths", "48", "--num_eval", "4", "--per_device_train_batch_size", "2"]
    )  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    assert set(results["eval"]) == {"48"}
    reloaded = LongCtxForConditionalGeneration.from_pretrained(out)
    assert reloaded.config.max_position_embeddings == 48


def test_learned_growth_starts_from_the_trained_rows_only():
    model = tiny_model(position_embedding_type="learned", max_position_embeddings=64)
    table = model.model.encoder.position.embeddings.weight.data.clone()
    extend_context(model, 64, "copy", trained_length=16)
    grown = model.model.encoder.position.embeddings.weight.data
    assert torch.equal(grown[:16], table[:16]) and torch.equal(grown[16:32], table[:16])


def test_rope_parameters_given_at_load_time_keep_their_defaults(tmp_path):
    tiny_model(position_embedding_type="rope").save_pretrained(tmp_path)
    model = LongCtxForConditionalGeneration.from_pretrained(tmp_path, rope_parameters={"rope_type": "yarn", "factor": 4.0})
    assert model.config.rope_parameters["rope_theta"] == 10000.0
    assert model.model.encoder.position.rope_type == "yarn"
    assert torch.isfinite(model(**random_batch(src_len=40)).logits).all()


def test_extend_script_without_fine_tuning_records_no_training_and_keeps_the_tokenizer(tmp_path):
    import json

    from hf_longctx.data.tokenization import build_tokenizer

    tokenizer = build_tokenizer()
    model = tiny_model(position_embedding_type="learned", max_position_embeddings=32, vocab_size=len(tokenizer))
    model.save_pretrained(tmp_path / "short")
    tokenizer.save_pretrained(tmp_path / "short")
    out = tmp_path / "long"
    extend_main(
        ["--model", str(tmp_path / "short"), "--output_dir", str(out), "--target_length", "48", "--method", "copy",
         "--eval_lengths", "48", "--num_eval", "4"]
    )  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    assert "train" not in results and results["extension"]["finetune_steps"] == 0
    assert results["extension"]["source"] == "short" and results["eval"]["48"]["num_samples"] == 4
    card = (out / "README.md").read_text()
    assert "not fine-tuned" in card and "`copy`" in card and str(tmp_path) not in card
    assert (out / "tokenizer.json").read_bytes() == (tmp_path / "short" / "tokenizer.json").read_bytes()
    # save only: a card too
    extend_main(["--model", str(tmp_path / "short"), "--output_dir", str(tmp_path / "saved"), "--target_length", "64", "--method", "copy"])
    assert "extended to 64 tokens" in (tmp_path / "saved" / "README.md").read_text()


def test_extend_script_keeps_a_converted_models_tokenizer_and_refuses_synthetic_fine_tuning(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel({"<pad>": 0, "</s>": 1, "<unk>": 2, "hello": 3}, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    own = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    model = tiny_model(position_embedding_type="learned", max_position_embeddings=32)
    model.save_pretrained(tmp_path / "converted")
    own.save_pretrained(tmp_path / "converted")
    with pytest.raises(ValueError, match=r"vocabulary the tokenizer .* does not have"):
        extend_main(["--model", str(tmp_path / "converted"), "--output_dir", str(tmp_path / "x"), "--target_length", "64",
                        "--method", "copy", "--finetune_steps", "2"])  # fmt: skip
    extend_main(["--model", str(tmp_path / "converted"), "--output_dir", str(tmp_path / "y"), "--target_length", "64", "--method", "copy"])
    assert (tmp_path / "y" / "tokenizer.json").read_bytes() == (tmp_path / "converted" / "tokenizer.json").read_bytes()


@pytest.mark.parametrize(
    "make, target, method, trained, pattern",
    [
        (dict(position_embedding_type="learned", max_position_embeddings=64), 48, "copy", None, r"`target_length`=48 fits the learned table"),
        (dict(position_embedding_type="rope"), 16, "yarn", 64, r"`target_length`=16 is not beyond `trained_length`=64"),
    ],
)
def test_a_target_that_extends_nothing_is_refused(make, target, method, trained, pattern):
    with pytest.raises(ValueError, match=pattern):
        extend_context(tiny_model(**make), target, method, trained)


@pytest.mark.parametrize(
    "extra, pattern",
    [
        (["--learning_rate", "5"], r"--learning_rate set training, but --finetune_steps is 0"),
        (["--max_steps", "7"], r"--max_steps: the fine-tuning steps are --finetune_steps"),
        (["--finetune_steps", "2", "--eval_seed", "3"], r"--eval_seed is for evaluation without fine-tuning"),
        (["--task", "copy", "--num_eval", "3"], r"--num_eval, --task set the fine-tuning or evaluation, and this run"),
        (["--finetune_steps", "1", "--num_train_epochs", "5"], r"--num_train_epochs: the fine-tuning runs --finetune_steps"),
        # checked before a model is loaded or a folder written, by the flags' names
        (["--eval_lengths", "3"], r"--eval_lengths has 3, outside what passkey fills \(at least 7 tokens"),
        (["--eval_lengths", "48", "--task", "paskey"], r"--task 'paskey' is not a task; valid: passkey,"),
        (["--eval_lengths", "48", "--num_eval", "0"], r"--num_eval 0: give at least 1 example per length"),
        (["--finetune_steps", "2", "--target_length", "8", "--method", "none"],
         r"--target_length 8 is below the 16 tokens of the shortest fine-tuning source"),
        (["--eval_lengths", "48", "--num_records", "3"], r"--num_records 3 means nothing to task 'passkey'"),
    ],
)  # fmt: skip
def test_extend_script_refuses_flags_it_would_not_use(extra, pattern, tmp_path):
    from hf_longctx.data.tokenization import build_tokenizer

    tokenizer = build_tokenizer()
    tiny_model(position_embedding_type="learned", max_position_embeddings=32, vocab_size=len(tokenizer)).save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match=pattern):
        extend_main(["--model", str(tmp_path / "m"), "--output_dir", str(tmp_path / "o"), "--target_length", "48", "--method", "copy", *extra])
    assert not (tmp_path / "o").exists(), "refused before anything is written"


def test_extend_script_evaluates_the_task_the_source_was_trained_on(tmp_path):
    import json

    from hf_longctx.data.tokenization import build_tokenizer

    tokenizer = build_tokenizer()
    tiny_model(position_embedding_type="alibi", vocab_size=len(tokenizer)).save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "results.json").write_text(json.dumps({"task": "multikey", "data_args": {"num_records": 3}}))
    extend_main(["--model", str(tmp_path / "m"), "--output_dir", str(tmp_path / "o"), "--target_length", "48",
                    "--method", "none", "--eval_lengths", "48", "--num_eval", "2"])  # fmt: skip
    extension = json.loads((tmp_path / "o" / "results.json").read_text())["extension"]
    assert extension["task"] == "multikey" and extension["num_records"] == 3, "the source's records, not the default 2"
    extend_main(["--model", str(tmp_path / "m"), "--output_dir", str(tmp_path / "o4"), "--target_length", "64",
                    "--method", "none", "--eval_lengths", "64", "--num_eval", "2", "--num_records", "4"])  # fmt: skip
    assert json.loads((tmp_path / "o4" / "results.json").read_text())["extension"]["num_records"] == 4
    extend_main(["--model", str(tmp_path / "m"), "--output_dir", str(tmp_path / "o5"), "--target_length", "48",
                    "--method", "none", "--eval_lengths", "48", "--num_eval", "2", "--task", "multikey"])  # fmt: skip
    assert json.loads((tmp_path / "o5" / "results.json").read_text())["extension"]["num_records"] == 3, "its own task"


def test_extending_a_model_trained_with_randomized_positions_raises_their_bound_to_the_target():
    model = tiny_model(position_embedding_type="sinusoidal", randomized_positions_max_length=64)
    assert extend_context(model, 256, "none").config.randomized_positions_max_length == 256
    assert extend_context(tiny_model(position_embedding_type="alibi"), 256, "none").config.randomized_positions_max_length is None
    with pytest.raises(ValueError, match=r"`trained_length`=64 means nothing to method 'none'"):
        extend_context(tiny_model(position_embedding_type="alibi"), 128, "none", 64)


def test_a_registered_subclass_extends_as_its_base_does():
    """extend.py reads what an encoding is (its class), not its name: a registered learned table grows too."""
    from hf_longctx.positions import POSITION_ENCODINGS, LearnedPositions, register_position_encoding

    register_position_encoding("mytable", type("MyTable", (LearnedPositions,), {}))
    try:
        model = tiny_model(position_embedding_type="mytable", max_position_embeddings=16)
        extended = extend_context(model, 64, "copy", trained_length=16)
        assert extended.config.max_position_embeddings == 64
        assert extended.model.encoder.position.embeddings.num_embeddings == 64
        assert extended.config.rope_parameters.get("rope_type") == "default", "the rope settings are untouched"
    finally:
        del POSITION_ENCODINGS["mytable"]


@pytest.mark.parametrize("method", ["linear", "dynamic", "yarn"])
def test_rope_scaling_keeps_the_partial_rotation_the_model_was_trained_with(method):
    model = tiny_model(position_embedding_type="rope", rope_parameters={"partial_rotary_factor": 0.5})
    rotated = model.model.encoder.position.inv_freq.numel()
    extended = extend_context(model, 64, method, trained_length=16)
    assert extended.config.rope_parameters["partial_rotary_factor"] == 0.5
    assert extended.model.encoder.position.inv_freq.numel() == rotated, "the same dimensions rotate, rescaled"


def test_switching_a_learned_table_to_an_offset_bias_takes_no_trained_length():
    with pytest.raises(ValueError, match=r"`trained_length`=999 means nothing to method 'alibi' \(alibi runs at any length\)"):
        extend_context(tiny_model(position_embedding_type="learned", max_position_embeddings=16), 4096, "alibi", 999)
