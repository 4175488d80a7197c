"""save_pretrained / from_pretrained, the Auto classes, and the remote-code folder."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import ENCODING_PAIRS, OTHER_SETUPS, random_batch, tiny_model
from safetensors import safe_open
from transformers import AutoModel, AutoModelForSeq2SeqLM

from hf_longctx import LongCtxConfig, LongCtxForConditionalGeneration, LongCtxModel

ROUND_TRIPS = {"-".join(p): {"position_embedding_type": p[0], "decoder_position_embedding_type": p[1]} for p in ENCODING_PAIRS}


@pytest.mark.parametrize("setup", (ROUND_TRIPS | OTHER_SETUPS).values(), ids=(ROUND_TRIPS | OTHER_SETUPS).keys())
def test_save_load_round_trip_is_exact(setup, tmp_path):
    model = tiny_model(**setup)
    batch = random_batch()
    expected = model(**batch).logits
    model.save_pretrained(tmp_path)
    loaded, info = AutoModelForSeq2SeqLM.from_pretrained(tmp_path, output_loading_info=True)
    assert type(loaded) is LongCtxForConditionalGeneration
    assert {k: v for k, v in info.items() if v} == {}, "no missing, unexpected or mismatched keys"
    loaded.eval()
    # models load on the meta device: deterministic buffers must be rebuilt, not left as garbage (T4)
    for (name, buffer), (_, reloaded) in zip(model.named_buffers(), loaded.named_buffers(), strict=True):
        assert torch.equal(buffer, reloaded), name
    assert torch.equal(loaded(**batch).logits, expected)
    assert loaded.lm_head.weight is loaded.model.shared.weight


def test_checkpoint_is_safetensors_without_buffers_or_duplicated_tied_weights(tmp_path):
    model = tiny_model(position_embedding_type="alibi")
    model.save_pretrained(tmp_path)
    assert not list(tmp_path.glob("*.bin"))
    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        keys = set(f.keys())
    assert "model.shared.weight" in keys
    assert "lm_head.weight" not in keys and "model.encoder.embed_tokens.weight" not in keys
    assert not any("slopes" in k or "inv_freq" in k for k in keys), "tables are recomputed, never stored"


def test_auto_model_loads_the_base_model_from_a_generation_checkpoint(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path)
    base = AutoModel.from_pretrained(tmp_path)
    assert type(base) is LongCtxModel
    assert torch.equal(base.shared.weight, model.model.shared.weight)


def test_saved_config_maps_all_three_auto_classes(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert set(auto_map) == {"AutoConfig", "AutoModel", "AutoModelForSeq2SeqLM"}
    for name in ("configuration_longctx.py", "modeling_longctx.py", "positions.py", "attention.py"):
        assert (tmp_path / name).is_file(), f"{name} is copied next to the weights"


REMOTE_LOADER = textwrap.dedent(
    """
    import sys, torch
    torch.set_num_threads(int(sys.argv[2]))  # the parent's count: reductions split the same way
    sys.modules["hf_longctx"] = None  # any import of the installed package now fails
    from transformers import AutoModelForSeq2SeqLM
    folder = sys.argv[1]
    model = AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True).eval()
    assert "hf_longctx" not in type(model).__module__.split(".")[0], type(model).__module__
    batch = torch.load(folder + "/batch.pt")
    logits = model(**batch).logits
    generated = model.generate(batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=5)
    torch.save({"logits": logits, "generated": generated, "module": type(model).__module__}, folder + "/out.pt")
    """
)


def test_the_remote_code_files_are_the_model_files_at_the_package_root(tmp_path):
    """`save_pretrained` copies the modeling file and what it imports: exactly the package root's modules but the
    two entry points; the tools (subpackages) never travel with a model."""
    import hf_longctx

    tiny_model().save_pretrained(tmp_path)
    root = {path.name for path in Path(hf_longctx.__file__).parent.glob("*.py")} - {"__init__.py", "cli.py"}
    assert {path.name for path in tmp_path.glob("*.py")} == root
    assert root == {"configuration_longctx.py", "modeling_longctx.py", "attention.py", "positions.py"}


@pytest.mark.parametrize("pe", ["relative", "rope"])
def test_remote_code_folder_loads_in_a_fresh_process_without_the_package(pe, tmp_path):
    model = tiny_model(position_embedding_type=pe)
    batch = random_batch()
    batch.pop("labels")
    batch["decoder_input_ids"] = torch.tensor([[0, 5, 6]] * 3)
    model.save_pretrained(tmp_path)
    torch.save(batch, tmp_path / "batch.pt")
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HF_HOME": str(tmp_path / "hf_home")}
    threads = str(torch.get_num_threads())
    subprocess.run([sys.executable, "-c", REMOTE_LOADER, str(tmp_path), threads], check=True, env=env, cwd=tmp_path)
    out = torch.load(tmp_path / "out.pt")
    assert out["module"].startswith("transformers_modules"), out["module"]
    # Equal thread counts make equal results likely, not promised (OpenMP scheduling, BLAS paths): a tolerance far
    # below what one wrong weight moves (~1e-2 at these sizes) still catches a wrong load.
    torch.testing.assert_close(out["logits"], model(**batch).logits, atol=1e-5, rtol=1e-5)
    generate_inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    assert torch.equal(out["generated"], model.generate(**generate_inputs, max_new_tokens=5))


def test_a_config_saved_before_the_defaults_changed_loads_as_it_was_made(tmp_path):
    """`relative_bias` (on for alibi) and `decoder_output_scale` (d_model**-0.5 with fan_in and tied embeddings) have
    new defaults; a folder saved before those fields existed loads with the values its model was made with (a
    hand-written dict, without `model_type`, gets the defaults)."""
    model = tiny_model(position_embedding_type="alibi", relative_bias=False, initializer="fan_in", decoder_output_scale=1.0)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    for name in ("relative_bias", "decoder_output_scale"):
        del saved[name]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    assert loaded.config.relative_bias is False and loaded.model.encoder.relative_bias is None
    assert loaded.config.decoder_output_scale == 1.0
    batch = random_batch()
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, model(**batch).logits)
    fresh = LongCtxConfig.from_dict({"position_embedding_type": "alibi", "d_model": 64, "initializer": "fan_in"})
    assert fresh.relative_bias is None and fresh.has_relative_bias("alibi") and fresh.decoder_output_scale == 64**-0.5


def test_relatives_encoder_convolution_is_its_default_and_a_folder_saved_before_loads_without_it(tmp_path):
    """`encoder_conv_kernel=None` resolves by the encoder's encoding (4 for relative and rope, 0 for the others) and is
    saved resolved; a relative folder saved before the field existed (or with an explicit 0) loads without a convolution."""
    encodings = ("relative", "alibi", "rope", "sinusoidal")
    assert [LongCtxConfig(position_embedding_type=e).encoder_conv_kernel for e in encodings] == [4, 0, 4, 0]
    assert LongCtxConfig(position_embedding_type="relative", encoder_conv_kernel=0).encoder_conv_kernel == 0
    assert LongCtxConfig(position_embedding_type="alibi", encoder_conv_kernel=3).encoder_conv_kernel == 3
    config = LongCtxConfig(position_embedding_type="relative")
    config.encoder_conv_kernel = None  # only a new config resolves it
    with pytest.raises(ValueError, match=r"`encoder_conv_kernel` is None, which only a new config resolves .* "
                       r"'relative' takes 4\); give the number of tokens, 0 for none"):  # fmt: skip
        config.validate_architecture()
    model = tiny_model(position_embedding_type="relative", encoder_conv_kernel=0)
    assert all(layer.token_conv is None for layer in model.model.encoder.layers)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["encoder_conv_kernel"] == 0
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["encoder_conv_kernel"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    assert loaded.config.encoder_conv_kernel == 0 and all(layer.token_conv is None for layer in loaded.model.encoder.layers)
    batch = random_batch()
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, model(**batch).logits)
    default = tiny_model(position_embedding_type="relative")
    assert all(layer.token_conv.weight.shape[-1] == 4 for layer in default.model.encoder.layers)
    default.save_pretrained(tmp_path / "default")
    again = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "default")
    assert again.config.encoder_conv_kernel == 4
    assert torch.equal(again.model.encoder.layers[0].token_conv.weight, default.model.encoder.layers[0].token_conv.weight)


def test_an_encodings_own_parameters_load_trained_or_initialised_never_as_garbage(tmp_path):
    """KERPLE's weights are plain `nn.Parameter`s: `_init_weights` gives them their initial values where a checkpoint
    lacks them (not whatever memory the meta-device load left), and a checkpoint's values win where it has them."""
    from safetensors.torch import load_file, save_file

    model = tiny_model(position_embedding_type="kerple")
    fresh = model.model.encoder.position.strength.detach().clone()
    with torch.no_grad():
        model.model.encoder.position.rate.fill_(-3.0)  # "trained"
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    save_file({k: v for k, v in weights.items() if "strength" not in k}, tmp_path / "model.safetensors", {"format": "pt"})
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    assert torch.equal(loaded.model.encoder.position.strength, fresh)
    assert torch.equal(loaded.model.encoder.position.rate, torch.full((4,), -3.0))


def test_ropes_default_is_t5s_initialisation_and_a_folder_saved_before_loads_as_it_was_trained(tmp_path):
    """`initializer=None` resolves by the encoder's encoding ("fan_in" for rope and relative, with T5's output scale;
    "normal" for the others) and is saved resolved; a rope folder saved without the fields loads as its model was
    trained."""
    rope = LongCtxConfig(position_embedding_type="rope", d_model=64)
    assert (rope.initializer, rope.decoder_output_scale) == ("fan_in", 64**-0.5)
    relative = LongCtxConfig(position_embedding_type="relative", d_model=64)
    assert (relative.initializer, relative.decoder_output_scale) == ("fan_in", 64**-0.5)
    for encoding in ("alibi", "kerple", "sinusoidal"):
        config = LongCtxConfig(position_embedding_type=encoding)
        assert (config.initializer, config.decoder_output_scale) == ("normal", 1.0), encoding
    assert LongCtxConfig(position_embedding_type="rope", initializer="normal").decoder_output_scale == 1.0
    rope.initializer = None  # only a new config resolves it
    with pytest.raises(ValueError, match=r"`initializer` is None, which only a new config resolves .*'rope' takes 'fan_in'"):
        rope.validate_architecture()
    model = tiny_model(position_embedding_type="rope", initializer="normal", encoder_conv_kernel=0)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["initializer"] == "normal" and saved["decoder_output_scale"] == 1.0
    for field in ("initializer", "decoder_output_scale", "encoder_conv_kernel"):  # a folder from before the fields
        del saved[field]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    assert (loaded.config.initializer, loaded.config.decoder_output_scale, loaded.config.encoder_conv_kernel) == ("normal", 1.0, 0)
    batch = random_batch()
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, model(**batch).logits)
