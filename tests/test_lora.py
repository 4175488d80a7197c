"""LoRA fine-tuning through peft (the `lora` extra): the documented target modules, a few Seq2SeqTrainer steps that
change only the adapters, generation, adapter save/load and merging. A few seconds on 2 CPU cores."""

import pytest
import torch
from conftest import random_batch, tiny_model
from datasets import Dataset
from torch import nn
from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments, default_data_collator

peft = pytest.importorskip("peft", reason="LoRA needs the `lora` extra: pip install -e '.[lora]'")
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402

RANK = 4
ATTENTION_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj"]  # self- and cross-attention (README: Fine-tuning)
FEED_FORWARD_MODULES = ["fc1", "fc2"]


def lora_model(target_modules, seed=0):
    config = LoraConfig(r=RANK, lora_alpha=8, target_modules=target_modules, task_type="SEQ_2_SEQ_LM")
    return get_peft_model(tiny_model(seed=seed), config)


@pytest.mark.parametrize(
    "target_modules",
    [["q_proj", "v_proj"], ATTENTION_MODULES, ATTENTION_MODULES + FEED_FORWARD_MODULES],
    ids=["q-v", "attention", "attention-ffn"],
)
def test_only_lora_parameters_are_trainable(target_modules):
    base = tiny_model()
    batch = random_batch()
    with torch.no_grad():
        expected = base(**batch).logits
    model = lora_model(target_modules)

    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in name or ".lora_B." in name for name in trainable)
    # One (r x in) A and one (out x r) B per targeted Linear, in every encoder and decoder layer (cross-attention too).
    targeted = [m for name, m in base.named_modules() if name.split(".")[-1] in target_modules]
    assert all(isinstance(m, nn.Linear) for m in targeted)
    assert sum(p.numel() for p in trainable.values()) == sum(RANK * (m.in_features + m.out_features) for m in targeted)
    assert (
        len(targeted)
        == len(target_modules) * (base.config.encoder_layers + base.config.decoder_layers)
        + sum(name in ATTENTION_MODULES for name in target_modules) * base.config.decoder_layers
    )  # the decoder's cross-attention has its own q/k/v/o

    # B starts at zero: the wrapped model computes exactly what the base model does.
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, expected)


def test_lora_trains_generates_and_the_adapter_round_trips(tmp_path):
    model = lora_model(["q_proj", "v_proj"])
    frozen = {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}
    batch = random_batch(batch=8, pad_last=False, seed=1)
    dataset = Dataset.from_dict({k: v.tolist() for k, v in batch.items()})
    args = Seq2SeqTrainingArguments(
        output_dir=str(tmp_path / "run"),
        max_steps=4,
        per_device_train_batch_size=8,
        learning_rate=1e-2,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
        seed=0,
    )
    with torch.no_grad():
        loss_before = model(**batch).loss.item()
    trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=dataset, data_collator=default_data_collator)
    trainer.train()
    model.eval()

    with torch.no_grad():
        assert model(**batch).loss.item() < loss_before
    for name, p in model.named_parameters():
        if not p.requires_grad:
            assert torch.equal(p, frozen[name]), f"{name} is frozen but changed"
    assert any(p.abs().sum() > 0 for name, p in model.named_parameters() if ".lora_B." in name), "adapters trained"

    inputs = {"input_ids": batch["input_ids"][:2], "attention_mask": batch["attention_mask"][:2]}
    with torch.no_grad():
        generated = model.generate(**inputs, max_new_tokens=5, do_sample=False)
        logits = model(**batch).logits
    assert generated.shape == (2, 6)

    # The adapter alone is saved (safetensors), and loads onto a fresh copy of the same base model.
    model.save_pretrained(tmp_path / "adapter")
    saved = {p.name for p in (tmp_path / "adapter").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= saved and "model.safetensors" not in saved
    reloaded = PeftModel.from_pretrained(tiny_model(seed=0), tmp_path / "adapter").eval()
    with torch.no_grad():
        assert torch.equal(reloaded(**batch).logits, logits)
        assert torch.equal(reloaded.generate(**inputs, max_new_tokens=5, do_sample=False), generated)

    # Merged into the base weights, the model needs no peft at inference and computes the same.
    merged = reloaded.merge_and_unload()
    assert type(merged).__name__ == "LongCtxForConditionalGeneration"
    with torch.no_grad():
        torch.testing.assert_close(merged(**batch).logits, logits, rtol=0, atol=1e-5)
