"""Convert BART, T5 (original and v1.1) and Marian checkpoints into hf_longctx, with the same outputs.

    from hf_longctx.conversion.convert import convert_pretrained
    model = convert_pretrained("path/to/bart-folder")       # or convert_model(BartForConditionalGeneration(...))
    python scripts/convert.py SOURCE_DIR OUTPUT_DIR         # a loadable folder: weights, code, tokenizer, model card

Each family is two small tables (`Family`): how its config maps to `LongCtxConfig` (every architectural choice is a
documented model option: norm type and placement, biases, attention scale, gated FFN, embedding scale and norm,
final logits bias, decoder output scale, position encoding), and which source tensor becomes which parameter
(regular expressions over `state_dict()` names). Index shifts of a checkpoint are done here, not in the model
(STYLE.md): BART's learned table keeps two unused rows in front (row i + 2 is position i), so it is sliced.

Nothing is guessed: a source setting the model cannot reproduce raises a `ValueError` naming the field; every source
tensor must be mapped or deliberately dropped, every target tensor must be filled, and tensors that hf_longctx ties
must be equal in the source.
"""

import copy
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForSeq2SeqLM, PreTrainedModel
from transformers.utils import logging

from ..configuration_longctx import LongCtxConfig
from ..modeling_longctx import LongCtxForConditionalGeneration
from ..positions import SinusoidalPositions

logger = logging.get_logger(__name__)

# Tokenizer files copied next to the converted weights when the source folder has them.
COPIED_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "spiece.model",
    "source.spm",
    "target.spm",
    "sentencepiece.bpe.model",
)

# Legacy BART config flags that HF's Bart class ignores; a value other than this says the weights come from
# another architecture (mBART-style pre-norm, fixed positions, a logits bias layer), so the conversion refuses.
BART_LEGACY_FLAGS = {
    "normalize_before": False,
    "add_final_layer_norm": False,
    "normalize_embedding": True,
    "static_position_embeddings": False,
    "add_bias_logits": False,
}

_BART_LAYER = r"model\.(encoder|decoder)\.layers\.(\d+)\."
_TO_LAYER = r"model.\1.layers.\2."


@dataclass(frozen=True)
class Rule:
    """A source tensor name (regular expression, matched in full) -> a target name (`re.Match.expand` template)."""

    source: str
    target: str
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None


@dataclass(frozen=True)
class Family:
    name: str
    config: Callable[[dict, nn.Module], dict]  # (source config dict, source model) -> LongCtxConfig kwargs
    rules: tuple[Rule, ...]
    dropped: tuple[str, ...] = field(default=())  # source tensors with no target (tables the model recomputes)


def _bart_positions(table: torch.Tensor) -> torch.Tensor:
    return table[2:]  # BartLearnedPositionalEmbedding looks up row position + 2; rows 0 and 1 are never used


BART_RULES = (
    Rule(r"model\.shared\.weight", "model.shared.weight"),
    Rule(r"model\.(encoder|decoder)\.embed_tokens\.weight", r"model.\1.embed_tokens.weight"),
    Rule(r"model\.(encoder|decoder)\.embed_positions\.weight", r"model.\1.position.embeddings.weight", _bart_positions),
    Rule(r"model\.(encoder|decoder)\.layernorm_embedding\.(weight|bias)", r"model.\1.embedding_norm.\2"),
    Rule(_BART_LAYER + r"(self_attn|encoder_attn)\.([qkv])_proj\.(weight|bias)", _TO_LAYER + r"\3.\4_proj.\5"),
    Rule(_BART_LAYER + r"(self_attn|encoder_attn)\.out_proj\.(weight|bias)", _TO_LAYER + r"\3.o_proj.\4"),
    Rule(_BART_LAYER + r"(self_attn|encoder_attn)_layer_norm\.(weight|bias)", _TO_LAYER + r"\3_residual.norm.\4"),
    Rule(_BART_LAYER + r"(fc1|fc2)\.(weight|bias)", _TO_LAYER + r"ffn.\3.\4"),
    Rule(_BART_LAYER + r"final_layer_norm\.(weight|bias)", _TO_LAYER + r"ffn_residual.norm.\3"),
    Rule(r"lm_head\.weight", "lm_head.weight"),
    Rule(r"final_logits_bias", "final_logits_bias"),
)

# Marian is BART without the embedding LayerNorm and with fixed sinusoids (checked, then dropped: the model
# recomputes them). Only the position rows differ.
MARIAN_RULES = tuple(rule for rule in BART_RULES if "embed_positions" not in rule.source)

_T5_BLOCK = r"(encoder|decoder)\.block\.(\d+)\.layer\.\d\."
T5_RULES = (
    Rule(r"shared\.weight", "model.shared.weight"),
    Rule(r"(encoder|decoder)\.embed_tokens\.weight", r"model.\1.embed_tokens.weight"),
    # T5 keeps its one bucket table per stack in the first block's self-attention; hf_longctx in the stack
    Rule(
        r"(encoder|decoder)\.block\.0\.layer\.0\.SelfAttention\.relative_attention_bias\.weight",
        r"model.\1.position.relative_attention_bias.weight",
    ),
    Rule(_T5_BLOCK + r"SelfAttention\.([qkvo])\.weight", _TO_LAYER + r"self_attn.\3_proj.weight"),
    Rule(_T5_BLOCK + r"EncDecAttention\.([qkvo])\.weight", _TO_LAYER + r"encoder_attn.\3_proj.weight"),
    Rule(_T5_BLOCK + r"DenseReluDense\.(wi|wi_0)\.weight", _TO_LAYER + r"ffn.fc1.weight"),  # wi_0 goes through act
    Rule(_T5_BLOCK + r"DenseReluDense\.wi_1\.weight", _TO_LAYER + r"ffn.fc1_linear.weight"),
    Rule(_T5_BLOCK + r"DenseReluDense\.wo\.weight", _TO_LAYER + r"ffn.fc2.weight"),
    # sub-layer norms: layer.0 self-attention; decoder layer.1 cross-attention; the last one the feed-forward
    Rule(
        r"(encoder|decoder)\.block\.(\d+)\.layer\.0\.layer_norm\.weight", _TO_LAYER + "self_attn_residual.norm.weight"
    ),
    Rule(r"(decoder)\.block\.(\d+)\.layer\.1\.layer_norm\.weight", _TO_LAYER + "encoder_attn_residual.norm.weight"),
    Rule(r"(encoder)\.block\.(\d+)\.layer\.1\.layer_norm\.weight", _TO_LAYER + "ffn_residual.norm.weight"),
    Rule(r"(decoder)\.block\.(\d+)\.layer\.2\.layer_norm\.weight", _TO_LAYER + "ffn_residual.norm.weight"),
    Rule(r"(encoder|decoder)\.final_layer_norm\.weight", r"model.\1.final_norm.weight"),
    Rule(r"lm_head\.weight", "lm_head.weight"),
)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _same_in_both_stacks(d: dict, encoder_field: str, decoder_field: str) -> int:
    _require(
        d[encoder_field] == d[decoder_field],
        f"`{decoder_field}`={d[decoder_field]} differs from `{encoder_field}`={d[encoder_field]}; hf_longctx uses "
        "one value for both stacks.",
    )
    return d[encoder_field]


def _ids(d: dict, source: nn.Module) -> dict:
    generation = getattr(source, "generation_config", None)
    start = d.get("decoder_start_token_id")
    if start is None and generation is not None:
        start = generation.decoder_start_token_id
    return {
        "pad_token_id": d.get("pad_token_id"),
        "bos_token_id": d.get("bos_token_id"),
        "eos_token_id": d.get("eos_token_id"),
        "decoder_start_token_id": start,
    }


def _lm_head_is_tied(source: nn.Module) -> bool:
    """Tie the converted head where the source's is tied: the same tensor, or equal values under a tying config.
    (transformers 5 builds every T5 with `tie_word_embeddings=True`; a v1.1 checkpoint unties it on load.)"""
    head, shared = source.get_output_embeddings().weight, source.get_input_embeddings().weight
    if head is shared or head.data_ptr() == shared.data_ptr():
        return True
    return bool(getattr(source.config, "tie_word_embeddings", False)) and torch.equal(head, shared)


def _bart_like(d: dict, source: nn.Module) -> dict:
    """The config fields BART and Marian share: post-norm LayerNorm, biases everywhere, 1/sqrt(head_dim)."""
    for name in ("encoder_layerdrop", "decoder_layerdrop"):
        if d.get(name):
            logger.info(f"`{name}`={d[name]} is a training-time regularisation; hf_longctx has none (inference equal).")
    return {
        "vocab_size": d["vocab_size"],
        "d_model": d["d_model"],
        "encoder_layers": d["encoder_layers"],
        "decoder_layers": d["decoder_layers"],
        "num_heads": _same_in_both_stacks(d, "encoder_attention_heads", "decoder_attention_heads"),
        "d_ff": _same_in_both_stacks(d, "encoder_ffn_dim", "decoder_ffn_dim"),
        "dropout": d["dropout"],
        "attention_dropout": d["attention_dropout"],
        "activation_dropout": d["activation_dropout"],
        "activation_function": d["activation_function"],
        "init_std": d["init_std"],
        "initializer": "normal",  # BART's N(0, init_std), for layers a user adds or re-initialises
        "decoder_output_scale": 1.0,
        "encoder_conv_kernel": 0,  # BART and Marian have none; explicit, so a changed default cannot move parity
        "pre_norm": False,
        "norm_type": "layernorm",
        "layer_norm_eps": 1e-5,  # nn.LayerNorm's default, which BART and Marian use
        "scale_embedding": bool(d["scale_embedding"]),
        "final_logits_bias": True,
        "max_position_embeddings": d["max_position_embeddings"],
        "tie_word_embeddings": _lm_head_is_tied(source),
        **_ids(d, source),
    }


def bart_config(d: dict, source: nn.Module) -> dict:
    for name, expected in BART_LEGACY_FLAGS.items():
        _require(
            d.get(name, expected) == expected,
            f"`{name}`={d.get(name)!r}: HF's Bart class ignores this flag, so these weights belong to another "
            f"architecture (mBART-style norms, fixed positions or a logits bias layer); only `{name}`={expected} "
            "converts exactly.",
        )
    return {
        **_bart_like(d, source),
        "position_embedding_type": "learned",
        "embedding_norm": True,  # layernorm_embedding, after token embeddings + positions
    }


def marian_config(d: dict, source: nn.Module) -> dict:
    _require(
        d.get("share_encoder_decoder_embeddings", True),
        "`share_encoder_decoder_embeddings`=False: this Marian model has separate source and target vocabularies; "
        "hf_longctx shares one embedding matrix between encoder and decoder.",
    )
    _require(
        d.get("decoder_vocab_size") in (None, d["vocab_size"]),
        f"`decoder_vocab_size`={d.get('decoder_vocab_size')} differs from `vocab_size`={d['vocab_size']}; "
        "hf_longctx has one vocabulary.",
    )
    kwargs = {
        **_bart_like(d, source),
        "position_embedding_type": "sinusoidal",
        "sinusoidal_layout": "halves",  # all sines, then all cosines; positions start at 0
    }
    _check_marian_sinusoids(source, LongCtxConfig(**kwargs))
    return kwargs


def _check_marian_sinusoids(source: nn.Module, config: LongCtxConfig) -> None:
    """Marian stores its sinusoid table as a frozen weight; the model recomputes it, so it must be the formula."""
    expected = SinusoidalPositions(config, causal=False)
    state = source.state_dict()
    for stack in ("encoder", "decoder"):
        table = state[f"model.{stack}.embed_positions.weight"]
        reference = expected.embed(torch.arange(table.shape[0])).to(table.dtype)
        _require(
            torch.allclose(table.detach().cpu(), reference, atol=1e-4),
            f"`model.{stack}.embed_positions.weight` is not Marian's sinusoid table (max difference "
            f"{(table.detach().cpu() - reference).abs().max():.2e}); hf_longctx recomputes the sinusoids and cannot "
            "carry a modified table.",
        )


def t5_config(d: dict, source: nn.Module) -> dict:
    heads, d_kv, d_model = d["num_heads"], d["d_kv"], d["d_model"]
    _require(
        heads * d_kv == d_model,
        f"`d_kv`={d_kv}: T5's attention width num_heads * d_kv = {heads * d_kv} differs from `d_model`={d_model}; "
        "hf_longctx uses head_dim = d_model / num_heads.",
    )
    projection = d["feed_forward_proj"]
    gated = projection.startswith("gated-")
    activation = projection.split("-")[-1]
    if projection == "gated-gelu":
        activation = "gelu_new"  # what T5Config maps it to (T5 v1.1)
    # transformers 5's T5 decides the output scale with `scale_decoder_outputs` (derived from the saved
    # `tie_word_embeddings`): original T5 multiplies the decoder output by d_model**-0.5, v1.1 does not.
    scale = d.get("scale_decoder_outputs", d.get("tie_word_embeddings", True))
    ids = _ids(d, source)
    if ids["decoder_start_token_id"] is None:
        ids["decoder_start_token_id"] = ids["pad_token_id"]  # T5 starts decoding with the pad token
    return {
        "vocab_size": d["vocab_size"],
        "d_model": d_model,
        "encoder_layers": d["num_layers"],
        "decoder_layers": d.get("num_decoder_layers") or d["num_layers"],
        "num_heads": heads,
        "d_ff": d["d_ff"],
        "dropout": d["dropout_rate"],
        "attention_dropout": d["dropout_rate"],
        "activation_dropout": d["dropout_rate"],
        "activation_function": activation,
        "gated_ffn": gated,
        "pre_norm": True,
        "norm_type": "rmsnorm",  # T5LayerNorm: scale only, no mean subtraction
        "layer_norm_eps": d["layer_norm_epsilon"],
        "attention_bias": False,
        "ffn_bias": False,
        "attention_scale": 1.0,  # T5 folds 1/sqrt(d_kv) into its initialisation
        "position_embedding_type": "relative",
        "relative_attention_num_buckets": d["relative_attention_num_buckets"],
        "relative_attention_max_distance": d["relative_attention_max_distance"],
        "decoder_output_scale": d_model**-0.5 if scale else 1.0,
        "initializer": "fan_in",  # T5's
        "encoder_conv_kernel": 0,  # T5 has none
        "tie_word_embeddings": _lm_head_is_tied(source),
        **ids,
    }


FAMILIES: dict[str, Family] = {
    "BartForConditionalGeneration": Family("bart", bart_config, BART_RULES),
    "T5ForConditionalGeneration": Family("t5", t5_config, T5_RULES),
    "MarianMTModel": Family(
        "marian", marian_config, MARIAN_RULES, dropped=(r"model\.(encoder|decoder)\.embed_positions\.weight",)
    ),
}


def family_of(source: nn.Module) -> Family:
    name = type(source).__name__
    if name not in FAMILIES:
        raise ValueError(
            f"Cannot convert a {name}: supported classes are {', '.join(FAMILIES)} "
            "(load the checkpoint with AutoModelForSeq2SeqLM)."
        )
    return FAMILIES[name]


def map_state_dict(source: nn.Module, family: Family) -> dict[str, torch.Tensor]:
    """Source `state_dict` -> hf_longctx names. Every source tensor is mapped by exactly one rule or dropped."""
    mapped = {}
    for name, tensor in source.state_dict().items():
        if any(re.fullmatch(pattern, name) for pattern in family.dropped):
            continue
        matches = [(rule, m) for rule in family.rules if (m := re.fullmatch(rule.source, name))]
        if not matches:
            raise ValueError(f"`{name}` in the {family.name} checkpoint has no hf_longctx counterpart.")
        assert len(matches) == 1, f"{family.name} rules overlap on {name}"
        rule, match = matches[0]
        target = match.expand(rule.target)
        mapped[target] = rule.transform(tensor) if rule.transform else tensor
    return mapped


def _load(model: LongCtxForConditionalGeneration, mapped: dict[str, torch.Tensor]) -> None:
    """Load and check: every target tensor filled, and what the target ties equal in the source."""
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    if unexpected:
        raise ValueError(f"Converted tensors without a place in the model: {sorted(unexpected)}.")
    if missing:
        raise ValueError(f"The source checkpoint fills no value for {sorted(missing)}.")
    state = model.state_dict()
    for name, tensor in mapped.items():  # a tied target holds the last value loaded: all sources must agree
        if not torch.equal(state[name], tensor.to(state[name].dtype)):
            raise ValueError(
                f"`{name}` is tied to another tensor in hf_longctx (tie_word_embeddings="
                f"{model.config.tie_word_embeddings}) but the source holds different values for them."
            )


def convert_model(source: PreTrainedModel) -> LongCtxForConditionalGeneration:
    """A `LongCtxForConditionalGeneration` with the weights, config and generation config of `source` (a
    `BartForConditionalGeneration`, `T5ForConditionalGeneration` or `MarianMTModel`), giving the same outputs."""
    family = family_of(source)
    kwargs = family.config(source.config.to_dict(), source)
    config = LongCtxConfig(**kwargs)
    dtype = source.get_input_embeddings().weight.dtype
    model = LongCtxForConditionalGeneration(config)
    model.to(device=source.device, dtype=dtype)
    with torch.no_grad():
        _load(model, map_state_dict(source, family))
    model.generation_config = copy.deepcopy(source.generation_config)  # start token, forced eos, beams, ...
    model.train(source.training)
    logger.info(f"Converted a {type(source).__name__} ({family.name}) into hf_longctx.")
    return model


def convert_pretrained(path_or_model: str | Path | PreTrainedModel) -> LongCtxForConditionalGeneration:
    """`convert_model` for a model object or a local checkpoint folder (loaded with AutoModelForSeq2SeqLM)."""
    if isinstance(path_or_model, PreTrainedModel):
        return convert_model(path_or_model)
    source = AutoModelForSeq2SeqLM.from_pretrained(path_or_model, local_files_only=True)
    return convert_model(source.eval())


def convert_folder(source_dir: str | Path, output_dir: str | Path) -> LongCtxForConditionalGeneration:
    """A converted model folder: safetensors, config + modeling code (loads with `import hf_longctx` or with
    `trust_remote_code=True`), generation config, the source's tokenizer files and a model card naming the source."""
    source_dir, output_dir = Path(source_dir), Path(output_dir)
    if not (source_dir / "config.json").is_file():  # else from_pretrained reads the path as a hub repo id
        raise ValueError(
            f"{source_dir} is not a model folder (no config.json): give the folder `save_pretrained` wrote (download a "
            "hub model first, e.g. `hf download facebook/bart-base --local-dir bart-base`)."
        )
    source = AutoModelForSeq2SeqLM.from_pretrained(source_dir, local_files_only=True).eval()
    model = convert_model(source)
    model.save_pretrained(output_dir)
    copied = [name for name in COPIED_TOKENIZER_FILES if (source_dir / name).is_file()]
    for name in copied:
        shutil.copy2(source_dir / name, output_dir / name)
    if not copied:
        logger.warning(f"No tokenizer files in {source_dir}; the converted folder has none either.")
    write_conversion_card(output_dir, source, source_dir)
    return model


def write_conversion_card(output_dir: Path, source: PreTrainedModel, source_dir: Path) -> None:
    from huggingface_hub import ModelCard, ModelCardData

    family = family_of(source).name
    origin = getattr(source.config, "_name_or_path", "") or str(source_dir)
    if os.path.isabs(origin):  # a local folder: its name, not this machine's path (a hub id stays as it is)
        origin = Path(origin).name
    config = LongCtxConfig.from_pretrained(output_dir)
    data = ModelCardData(library_name="transformers", pipeline_tag="text2text-generation", tags=["hf_longctx", family])
    content = "\n".join(
        [
            f"---\n{data.to_yaml()}\n---",
            "",
            f"# {output_dir.name}",
            "",
            f"An hf_longctx conversion of `{origin}` ({type(source).__name__}), with the "
            "same weights and the same outputs (logits, loss, greedy and beam-search generation).",
            "",
            f"- position encoding: `{config.position_embedding_type}`",
            f"- {'pre' if config.pre_norm else 'post'}-norm {config.norm_type}, d_model {config.d_model}, "
            f"{config.encoder_layers}+{config.decoder_layers} layers, {config.num_heads} heads",
            "",
            "```python",
            "import hf_longctx  # or pass trust_remote_code=True",
            "from transformers import AutoModelForSeq2SeqLM",
            f'model = AutoModelForSeq2SeqLM.from_pretrained("{output_dir.name}")',
            "```",
            "",
            "Produced by `scripts/convert.py`; see `hf_longctx/conversion/convert.py` for the mapping.",
            "",
        ]
    )
    ModelCard(content).save(output_dir / "README.md")


__all__ = ["FAMILIES", "convert_model", "convert_pretrained", "convert_folder", "map_state_dict"]
