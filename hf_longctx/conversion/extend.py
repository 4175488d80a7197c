"""Context extension of a trained hf_longctx model: one documented method per source encoding.

| encoding | methods | what changes |
|---|---|---|
| learned | `copy` (LED: the table is tiled, row i of the new table is row i mod n of the old), `interpolate` (rows linearly interpolated, as position interpolation does for RoPE), `alibi` / `relative` (switch to an encoding that runs at any length; the table is dropped, `relative` starts from a zero bias and needs fine-tuning) | `max_position_embeddings` and the position tables |
| rope | `linear` (position interpolation, Chen et al. 2023), `dynamic` (NTK-aware), `yarn` (Peng et al. 2023) | `rope_parameters`, with factor = target / trained length |
| sinusoidal, relative, alibi | `none` | nothing: they run at any length; fine-tuning at the target length is the only lever |

`extend_context(model, target_length, method, trained_length)` returns the extended model (a new one when the
encoding changes); `scripts/extend_context.py` loads a folder, extends, optionally fine-tunes, and saves.
"""

import copy

import torch
from torch import nn
from transformers.utils import logging

from ..configuration_longctx import LongCtxConfig
from ..modeling_longctx import LongCtxForConditionalGeneration
from ..positions import POSITION_ENCODINGS, LearnedPositions, RotaryPositions

logger = logging.get_logger(__name__)


def grow_table(table: torch.Tensor, length: int, method: str) -> torch.Tensor:
    """A (length, D) position table from an (n, D) one, by tiling (`copy`) or linear interpolation."""
    n = table.shape[0]
    if length <= n:
        return table[:length].clone()
    if method == "copy":
        return table[torch.arange(length) % n].clone()
    # interpolate: new row i sits at old position i * (n - 1) / (length - 1)
    return nn.functional.interpolate(table.T[None], size=length, mode="linear", align_corners=True)[0].T.contiguous()


# A learned table's extension methods that replace it by an encoding running at any length (no trained length)
SWITCH_METHODS = ("alibi", "relative")


def extend_context(
    model: LongCtxForConditionalGeneration, target_length: int, method: str, trained_length: int | None = None
) -> LongCtxForConditionalGeneration:
    config: LongCtxConfig = model.config
    encoding = config.position_embedding_type
    cls = POSITION_ENCODINGS[encoding]  # what the methods do depends on what the encoding is, not on its name
    methods = cls.extension_methods
    if method not in methods:
        raise ValueError(
            f"`method`={method!r} does not apply to position_embedding_type={encoding!r}; valid: {', '.join(methods)}."
        )
    if target_length < 1:
        raise ValueError(f"`target_length` must be positive, got {target_length}.")
    if trained_length is not None and (method == "none" or (issubclass(cls, LearnedPositions) and method in SWITCH_METHODS)):
        what = f"{encoding} runs at any length as it is" if method == "none" else f"{method} runs at any length"
        raise ValueError(f"`trained_length`={trained_length} means nothing to method {method!r} ({what}); drop it.")
    bound = config.randomized_positions_max_length
    if bound is not None and bound < target_length:  # fine-tuning at the target draws its positions below the bound
        logger.warning(f"randomized_positions_max_length {bound} -> {target_length}: the extended model trains up to it.")
        config.randomized_positions_max_length = target_length
    if method == "none":
        return model
    if issubclass(cls, LearnedPositions) and method in ("copy", "interpolate"):
        return _grow_learned(model, target_length, method, trained_length)
    if issubclass(cls, LearnedPositions) and method in SWITCH_METHODS:
        return _switch_encoding(model, method)
    if issubclass(cls, RotaryPositions) and method in ("linear", "dynamic", "yarn"):
        return _scale_rope(model, target_length, method, trained_length)
    raise NotImplementedError(
        f"{cls.__name__} lists `extension_methods` {methods}, but extend.py implements {method!r} only for learned "
        "tables (copy, interpolate, alibi, relative) and RoPE (linear, dynamic, yarn)."
    )


def _grow_learned(model, target_length: int, method: str, trained_length: int | None):
    """Rows past `trained_length` (if given) never trained: the new table is grown from the trained rows only."""
    table = model.config.max_position_embeddings
    if target_length <= table and (trained_length is None or trained_length >= table):
        raise ValueError(
            f"`target_length`={target_length} fits the learned table of `max_position_embeddings`={table} rows "
            "already: there is nothing to extend. Give a longer `target_length` (or `trained_length` < the table to "
            "regrow the rows training never reached)."
        )
    for stack in (model.model.encoder, model.model.decoder):
        if stack.position.kind != "additive" or not hasattr(stack.position, "embeddings"):
            continue
        old = stack.position.embeddings.weight.data[:trained_length]
        rows = max(target_length, stack.position.embeddings.num_embeddings)
        new = nn.Embedding(rows, old.shape[1], device=old.device, dtype=old.dtype)
        new.weight.data.copy_(grow_table(old, new.num_embeddings, method))
        stack.position.embeddings = new
    model.config.max_position_embeddings = max(target_length, model.config.max_position_embeddings)
    return model


def write_extension_card(output_dir, source: str, record: dict, results: dict | None = None) -> None:
    """README.md of an extended folder: what was done (source, method, lengths, fine-tuning or none) and, when the
    folder was evaluated, the exact match per length. `source` is a folder name or hub id, not a local path."""
    from pathlib import Path

    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(library_name="transformers", pipeline_tag="text2text-generation", tags=["hf_longctx"])
    tuned = record["finetune_steps"]
    lines = [
        f"---\n{data.to_yaml()}\n---",
        "",
        f"# {Path(output_dir).name}",
        "",
        f"`{source}` extended to {record['target_length']} tokens with the `{record['method']}` method of "
        f"`hf_longctx.conversion.extend` ({record['position_embedding_type']} positions"
        + (f", trained at up to {record['trained_length']} tokens" if record.get("trained_length") else "")
        + "), "
        + (f"then fine-tuned for {tuned} steps on `{record['task']}`." if tuned else "not fine-tuned: the weights are the source's."),
    ]
    if results:
        lines += ["", "| source length | exact match | n |", "|---:|---:|---:|"]
        lines += [f"| {n} | {r['exact_match']:.3f} | {r['num_samples']} |" for n, r in results.items()]
    lines += ["", f"Made with `{record['command']}`."]
    ModelCard("\n".join(lines) + "\n").save(Path(output_dir) / "README.md")


def _switch_encoding(model, encoding: str):
    config = copy.deepcopy(model.config)
    trained_bias = model.get_encoder().relative_bias is not None
    if trained_bias and encoding == "relative":
        raise ValueError(
            "The model has `relative_bias` (T5's learned buckets) on top of its learned table; switching to "
            "'relative' would give it two bucket tables. Switch to 'alibi', which keeps the trained `relative_bias`."
        )
    config.position_embedding_type = encoding
    config.relative_bias = trained_bias  # as trained: the switch replaces positions, it adds no table
    if config.decoder_position_embedding_type == "learned":
        config.decoder_position_embedding_type = encoding
    new = LongCtxForConditionalGeneration(config).to(model.device, model.dtype)
    state = {k: v for k, v in model.state_dict().items() if ".position.embeddings." not in k}
    missing, unexpected = new.load_state_dict(state, strict=False)
    if unexpected or any(".position." not in k for k in missing):
        raise RuntimeError(f"switching encodings lost weights: missing {missing}, unexpected {unexpected}")
    for key in missing:  # a fresh relative table starts from zero: no bias until fine-tuned
        new.get_parameter(key).data.zero_()
    new.generation_config = model.generation_config
    return new


def _scale_rope(model, target_length: int, method: str, trained_length: int | None):
    config = model.config
    if trained_length is None:
        raise ValueError(
            "`trained_length` is needed for rope scaling: the longest input the model was trained on "
            "(the scaling factor is target_length / trained_length)."
        )
    if target_length <= trained_length:
        raise ValueError(
            f"`target_length`={target_length} is not beyond `trained_length`={trained_length}: a rope scaling factor "
            "of target / trained <= 1 changes nothing. Give the length to run at, longer than the trained one."
        )
    factor = target_length / trained_length
    # the keys that say how the model was trained (its base, how much of each head rotates) stay; a scaling the
    # model had before is replaced
    trained = {k: v for k, v in config.rope_parameters.items() if k in ("rope_theta", "partial_rotary_factor")}
    parameters = {"rope_type": method, **trained, "factor": factor}
    if method == "yarn":
        parameters["original_max_position_embeddings"] = trained_length
    if method == "dynamic":  # HF's dynamic NTK treats max_position_embeddings as the trained length
        config.max_position_embeddings = trained_length
    config.rope_parameters = parameters
    for stack in (model.model.encoder, model.model.decoder):
        if stack.position.kind == "rotary":  # rebuilt with the new `rope_parameters`, of the class it had
            stack.position = type(stack.position)(config, causal=stack.causal).to(model.device)
    return model
