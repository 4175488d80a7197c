"""Configuration of the hf_longctx encoder-decoder.

Field names follow BART (`d_model`, `encoder_layers`, `decoder_layers`, ...): `generate` sizes its cache
from `decoder_layers`, and an HF user reads them without a glossary.
"""

import dataclasses
import difflib
import math

from huggingface_hub.dataclasses import strict
from transformers import GenerationConfig, PreTrainedConfig
from transformers.activations import ACT2FN
from transformers.utils import logging

logger = logging.get_logger(__name__)

ROPE_TYPES = ("default", "linear", "dynamic", "yarn")
NORM_TYPES = ("layernorm", "rmsnorm")
SINUSOIDAL_LAYOUTS = ("interleaved", "halves")
CHUNKED_ATTENTION_MODES = ("auto", "always", "never")
INITIALIZERS = ("normal", "fan_in")

# BART / T5 names with an exact meaning here: a config a user brings from those families keeps its sizes.
FOREIGN_NAMES = {
    "encoder_attention_heads": "num_heads",  # BART (one head count here: the two must agree)
    "decoder_attention_heads": "num_heads",
    "encoder_ffn_dim": "d_ff",
    "decoder_ffn_dim": "d_ff",
    "num_layers": "encoder_layers",  # T5: the encoder's, and the decoder's unless `num_decoder_layers` says
    "num_decoder_layers": "decoder_layers",
    "dropout_rate": "dropout",
    "layer_norm_epsilon": "layer_norm_eps",  # T5; the other spellings of the norm epsilon across HF configs:
    "rms_norm_eps": "layer_norm_eps",
    "norm_eps": "layer_norm_eps",
    "norm_epsilon": "layer_norm_eps",
    "post_norm_eps": "layer_norm_eps",  # (one epsilon serves every norm here)
    "initializer_range": "init_std",
}
# Fields of experiments that main carried for a while, with what a config that has them should do instead.
RETIRED_NAMES = {
    "alibi_learned_bias": "it became `relative_bias`, whose table has another weight name: retrain with "
    "relative_bias=True (the old weights would not load)",
    "alibi_directional": "the experiment (mirrored ALiBi slopes) did not learn and was removed; drop it",
}
# T5 names that are checked or translated rather than mapped one to one (`_take_foreign_names`)
T5_ONLY_NAMES = {"d_kv", "feed_forward_proj"}
# Keys that configs saved by transformers (or brought from the hub) carry and `PreTrainedConfig` handles itself.
HF_CONFIG_KEYS = {
    "architectures", "auto_map", "transformers_version", "model_type", "_name_or_path", "name_or_path",
    "_commit_hash", "torch_dtype", "dtype", "id2label", "label2id", "num_labels", "problem_type",
    "attn_implementation", "output_attentions", "experts_implementation", "per_layer_config", "tokenizer_class",
    "prefix", "sep_token_id", "task_specific_params", "finetuning_task", "is_decoder", "add_cross_attention",
    "cross_attention_hidden_size", "tie_encoder_decoder", "pruned_heads", "torchscript", "use_bfloat16",
    "tf_legacy_loss", "chunk_size_feed_forward", "output_hidden_states", "return_dict", "rope_scaling",
    "rope_theta", "forced_bos_token_id", "forced_eos_token_id", "_attn_implementation_internal",
    "_experts_implementation_internal",
}  # fmt: skip


@strict
class LongCtxConfig(PreTrainedConfig):
    r"""
    Configuration of [`LongCtxModel`] and [`LongCtxForConditionalGeneration`].

    Sizes:
        vocab_size, d_model, encoder_layers, decoder_layers, num_heads, d_ff: the usual Transformer sizes;
        `d_model` must be divisible by `num_heads`.

    Regularisation and activation:
        dropout (residual and embeddings), attention_dropout (attention probabilities), activation_dropout
        (inside the feed-forward), activation_function (any key of `transformers.activations.ACT2FN`).

    Layer options (the defaults are the classic Transformer):
        attention_bias / ffn_bias: biases in the attention projections / the feed-forward (T5 has none).
        gated_ffn: FFN(x) = fc2(act(fc1 x) * fc1_linear x) (T5 v1.1 "gated-gelu", GLU variants).

    Checkpoint compatibility (what `hf_longctx.conversion.convert` sets so that BART / T5 / Marian weights compute
    what they computed in their own classes; a fresh model leaves them at their defaults, the trunk ablation varies
    `attention_scale`):
        attention_scale: multiplier of q.k; `None` is 1/sqrt(head_dim), T5 uses 1.0 (its init absorbs it).
        embedding_norm: a norm on embeddings + positions before the first layer (BART's layernorm_embedding).
        final_logits_bias: a fixed (buffer) bias added to the logits (BART, Marian).
        decoder_output_scale (`float | None`): multiplies the decoder output before the LM head (original T5:
            d_model**-0.5). `None` (the default): d_model**-0.5 with `initializer="fan_in"` and tied embeddings
            (T5's pairing), else 1.0.
        sinusoidal_layout: "interleaved" puts sin at 2i and cos at 2i+1 (the paper); "halves" puts all sines
            then all cosines (Marian, fairseq).

    Initialisation:
        initializer (`"normal"` or `"fan_in"`): `"normal"` draws every Linear and Embedding from N(0, init_std), as
            BART does. `"fan_in"` is T5's scheme: token embeddings N(0, 1), each Linear N(0, 1/fan_in) (the query
            projection also times head_dim**-0.5 / the score scale, so that the scores start as T5's whatever
            `attention_scale` is), the relative bias tables N(0, 1/d_model). With tied embeddings at N(0, 1) the
            logits start sqrt(d_model) times larger unless `decoder_output_scale` is d_model**-0.5, as in T5 (its
            default then). `None` (the default): the encoder encoding's `initializer_by_default`, `"fan_in"` for
            `rope` and `relative` and `"normal"` for the others, resolved when the config is built (and saved so).
            Why `"fan_in"` for relative (with its encoder convolution; same protocol as below, seeds 1 / 2 / 42):
            it learned the multi-key matching at steps 2750 / 3750 / 1750 at lr 2e-3 and 4250 / (0.985) / 3250 at
            1e-3 (8000 steps), each seed as fast as HF T5 or faster (3750 / 5750 / 3500; 5250 / (0.985) / 5000; with
            12000 steps at 1e-3, results/trunk-ablation/multikey-12k: 3500 / 7250 / 3250 against T5's 9500 /
            5000 / unsolved, seed 2 1.45x T5's steps), where `"normal"` needed 3500 / 4000 / 4750 and 6250 /
            (0.98) / 6250 (a fourth seed, 3, at 2e-3: 3750, T5 unsolved at 0.555); kv_recall with 2-4 pairs (`--task kv_recall --train_min_len 16 --train_max_len 28`), which T5
            solves on no run: 2750 / 2500 / 1500 and 4500 / 4250 / 4250 at 1e-3, `"normal"` one of four; passkey in 750 /
            750 / 500 steps (`"normal"` 750 / 1000 / 1500), 16x 0.47 / 0.29 / 0.51 (`"normal"` 0.70 / 0.12 /
            0.67). Why `"fan_in"
            for rope (with the encoder convolution, `encoder_conv_kernel`; multi-key needle, `scripts/ablate_trunk.py
            --steps 8000`, results/trunk-ablation/multikey-8k: d_model 64, 2+2 layers, batch 64; seeds 1 / 2 / 42):
            RoPE learned the matching at steps 2250 / (0.985) / 3500 at lr 1e-3 (with 12000 steps 3750 / 4500 /
            3000, T5 9500 / 5000 / unsolved) and 3750 / 5000 / 3000 at 2e-3,
            where HF T5 of the same size needs 5250 / (0.985) / 5000 and 3750 / 5750 / 3500 (a fourth seed, 3: 2000
            and 1250, where T5 stays at 0.815 and 0.555); on passkey it learned in
            500 steps on every seed and kept 0.27 / 0.41 / 0.28 at 16x the trained length (before: 750 / 1250 / 1000
            steps, 0.12 / 0.12 / 0.04). RoPE's trunk before (`"normal"`, no convolution) learned the matching on no
            run at lr 1e-3, nor with the convolution, partial rotation, `relative_bias` or no score scale;
            `"fan_in"` without the convolution took 4250 steps on seed 1 (results/trunk-ablation/README.md). Not for ALiBi (which has
            `relative_bias`): there `"fan_in"` reached 0.99 at steps 2750 / 2500 / 1750 at lr 2e-3 (`"normal"`:
            0.98 / 0.96 / step 2500, 4000 steps) but stayed at 0.59 and 0.66 on two of three seeds at lr 1e-3,
            where `"normal"` reached 0.99 on all three (2750 / 3000 / 2750): a default must hold at both learning
            rates. A config saved before this field existed loads with `"normal"`, as its model was trained.

    Normalisation:
        pre_norm (`bool`, defaults to `True`): normalise the input of each sub-layer and add a final norm after
            each stack (GPT-2/T5 style), instead of normalising after the residual sum as the original
            Transformer does (`pre_norm=False`). Pre-norm is the default because gradients reach the lower
            layers undamped, so deep or long-context models train without warm-up tricks (Xiong et al. 2020,
            "On Layer Normalization in the Transformer Architecture").
        norm_type (`"layernorm"` or `"rmsnorm"`), layer_norm_eps.

    Positions (`position_embedding_type`: a name of `hf_longctx.POSITION_ENCODINGS`, whose classes say what each
    one is; built in: `sinusoidal | learned | relative | alibi | kerple | rope | none`):
        sinusoidal: the fixed formula of "Attention Is All You Need", added to the embeddings, any length.
        learned: a table of `max_position_embeddings` rows, added to the embeddings; cannot run longer inputs.
        max_position_embeddings: HF's meaning, the longest position the model handles as built: the rows of a
            `learned` table, and for `rope` the trained length past which `rope_type="dynamic"` grows its base (as
            in HF's decoders; `rope_parameters["original_max_position_embeddings"]` is what `yarn` reads). No other
            encoding reads it. `scripts/train.py` sets it to the longest training source, or for a table to the
            longest evaluation length.
        relative: T5 buckets (`relative_attention_num_buckets`, `relative_attention_max_distance`), a learned
            bias per head on the attention scores; bidirectional in the encoder, causal in the decoder.
        alibi: a fixed linear distance penalty per head, symmetric in the encoder, causal in the decoder.
        kerple: a learned logarithmic distance penalty, -r1 * log(1 + r2 * |i - j|) with two weights per head
            (Chi et al. 2022); symmetric in the encoder, causal in the decoder.
        relative_bias (`bool | None`, defaults to `None`): T5's learned bucket bias (`relative_attention_num_buckets`,
            `relative_attention_max_distance`; one value per head and bucket, one table per stack shared by its
            layers) added to a stack's self-attention scores on top of its encoding. `True`: on every stack whose
            encoding takes it (built in: sinusoidal, learned, alibi, kerple, rope; `relative` is that bias alone,
            `none` has no positions);
            `None`: on the alibi stacks only; `False`: on none. Past `relative_attention_max_distance` the table is
            one constant, so lengths beyond it are the encoding's to handle. Why it is on for ALiBi: on the
            multi-key needle (two records `KEY k k = d d d d d`, a query `? k k`; `scripts/ablate_trunk.py`, results/trunk-ablation/: d_model 64, 2+2 layers, batch 64,
            4000 steps), ALiBi alone stayed at ~0.5 exact match (the value of *a* record, never the queried one) on
            3 of 3 seeds, RoPE alone on 2 of 2, and so did ALiBi with T5's initialisation (3 of 3) and with T5's
            whole trunk (3 of 3; also without its init or its RMSNorm); with the bias, ALiBi reached 0.99
            at step 2500 and 0.98 / 0.96 on the other two seeds at lr 2e-3, and 0.99 at steps 2750 / 3000 / 2750 at
            lr 1e-3, where HF T5 of the same size reached 0.54-0.94 (2e-3) and 0.61-0.97 (1e-3) in 4000 steps. Its
            cost: the bias has a gradient, so in training the long-input path computes its blocks again in the
            backward, as for `relative` (inference is unchanged). Off by default for rope: with it RoPE learned the
            matching on 1 of 5 runs (0.97; 0.51-0.56 on the others, at lr 1e-3 and 2e-3), without it on none of
            2, and a bias costs RoPE SDPA's fused kernels. A config saved before this field existed loads with
            `relative_bias=False`, as its model was trained.
        encoder_conv_kernel (`int | None`, defaults to `None`): before each encoder self-attention, add to the
            normalised input a depthwise convolution over the current token and the `encoder_conv_kernel - 1` before
            it in its source (one weight per channel and offset, N(0, init_std) at init; padded slots read as zeros,
            and packed sources, where `position_ids` restart, are not read across), so that a token carries its
            neighbours' content into the attention (a short "Canon layer", Allen-Zhu 2025, "Physics of Language
            Models: Part 4.1"). It only sees fixed offsets, so it runs at any length. `None`: the encoder
            encoding's `encoder_conv_kernel_by_default`, 4 for `relative` and `rope` and 0 (off) for the others,
            resolved when the config is built (and saved so): a `position_embedding_type` changed afterwards keeps
            the kernel. For `rope` it goes with T5's initialisation (`initializer`, whose docstring has the
            measurement; the convolution alone left RoPE at 0.56 / 0.54 on the multi-key needle at lr 1e-3).
            Why 4 for `relative` (`scripts/ablate_trunk.py`, results/trunk-ablation/: d_model 64, 2+2 layers,
            batch 64): on the multi-key needle (8000 steps) it learned the matching on 3 of 3 seeds at lr 2e-3
            (steps 3500 / 4000 / 4750; without it 2 of 3) and 2 of 3 at 1e-3 (6250 / 6250, 0.98; without it 0 of 3:
            0.97 / 0.54 / 0.90), where HF T5 of the same size learned 3 of 3 and 2 of 3; on passkey it kept 0.69 /
            0.12 / 0.67 at 16x the trained length (without it 0.04 / 0.01 / 0.01; T5 0.01 / 0.12 / 0.14); on
            kv_recall (4000 steps, lr 2e-3), which no model learns at this size, 0.14 / 0.16 / 0.20 (without it 0.05 /
            0.01 / 0.01; T5 0.07 / 0.16 / 0.14). Off for the others: with ALiBi (which has
            `relative_bias`) it cost a seed at lr 1e-3 (0.53; 0.99 at step 2750 without) and on kv_recall 0.18
            against 0.67. A config saved before this default (a file with `encoder_conv_kernel: 0`, or without
            the field) loads with 0, as its model was trained.
        encoder_local_radius (`int | None`, defaults to `None`): each encoder token attends only to the tokens
            within this distance on either side (LongT5's local attention, Guo et al. 2022, `local_radius`), in
            training and at any length, whatever the encoding (a score bias with keys farther away masked: the
            dense path and the long-input path alike; the memory stays linear, the compute is not cut yet). The
            decoder and the cross-attention are unchanged, so what the source holds is found by the
            cross-attention, whose view does not depend on where in the source it is. With it every encoder token
            sees at any length what it saw in training (with a radius below the training length), and an answer
            that a model finds by matching in its encoder (a query at the end against records far before it),
            which fails once the distances pass the trained ones, has to be found by the decoder instead.
            Measured on the multi-key needle (`scripts/ablate_trunk.py --steps 8000 --variants default+local16/alibi
            --lengths ...`, sources of 24-64 tokens, radius 16; results/trunk-ablation/README.md, "An encoder
            window"): 0.95-0.99 exact match at 16x and 32x the trained length on every run that learned the task
            (the default alibi: 0.56-0.95 at 16x over its seeds), but learning took 5000-6500 steps (the default
            2250-5500) and two runs of six did not learn it in 8000: not a default. None (the default): every token
            attends to the whole source. Distances are by position, so it cannot go with
            `randomized_positions_max_length`.
        alibi_max_penalty (`float | None`, defaults to 60.0): past this penalty (distance 60 / slope) a key is
            masked, which makes each ALiBi head a window of 60 / slope tokens. A key that far weighs under e^-60
            (9e-27) of an equally scored key at the query's own position, below fp32 and bf16 resolution (only a
            key whose q.k exceeds the near keys' by some 44 or more would have counted), but
            left in, its softmax weight and gradient are subnormal floats, which x86 CPUs process many times
            slower: the CPU backward of one 512-token attention call took 2.7x the time of no bias
            (`scripts/profile_attention.py`). `None` keeps the exact linear penalty at every distance.
        rope: rotary q/k; `rope_parameters` selects the scaling used to run past the trained length:
            `{"rope_type": "default" | "linear" | "dynamic" | "yarn", "rope_theta": 10000.0, "factor": 4.0,
            "original_max_position_embeddings": 64}` (the same dict as HF's decoder-only models; a key the
            scaling does not read is refused). `"partial_rotary_factor": 0.5` rotates only the first half of each
            head's dimensions (as GPT-NeoX and Phi), leaving the rest to match by content alone.
        sinusoidal_scale: amplitude of the sinusoid table (1.0: the formula, as checkpoints such as Marian use it).
            A row of the table has norm sqrt(d_model / 2) while N(0, init_std) token embeddings have about
            init_std * sqrt(d_model): at d_model 64 the positions are ~35x larger and a fresh passkey model did not
            train (loss stuck at chance for 2000 steps, as HF's Marian without embedding scaling); 0.02 puts them
            at token scale and it trains. Set it for fresh small models.
        randomized_positions_max_length: randomized position training (Ruoss et al. 2023): in training, the
            encoder's positions are a sorted random sample of distinct integers below this bound instead of
            0..L-1, so the model meets the large positions and distances of long inputs while training short.
            Inference uses 0..L-1. Works with every index-based encoding (a `learned` table must hold the bound).
        none: no positions. An encoder without positions is order-blind, so `none` is accepted only for
            the decoder (`decoder_position_embedding_type="none"`), where the causal mask gives order.
        decoder_position_embedding_type: defaults to `position_embedding_type`.
        Cross-attention carries no positions unless `cross_attention_alignment` is set.
        cross_attention_alignment (`bool`, defaults to `False`): positions in the cross-attention, for outputs that
            follow the source in order (copy, normalise, transcribe) or backwards (reverse), past the trained output
            length, where cross-attention without positions has to find "source token t" by content alone
            (Ontañón et al. 2022, arXiv 2108.04378). Each cross-attention head adds a learned bias of the offset of
            source position j from the decoder position t along its diagonal: j - t for the first half of the heads,
            (n - 1 - j) - t for the rest (n: the example's unpadded source tokens, j counted over them), in T5's
            bidirectional buckets (`relative_attention_num_buckets`, up to `cross_attention_alignment_max_distance`);
            one table per decoder, shared by its layers; the first head of each diagonal starts at -|offset|
            (it attends around its diagonal from the first step), the others at 0 (content heads).
            The bias at decoder step t needs only t and the encoder mask, so cached decoding, beam search and a
            static cache are unchanged, and an offset means the same at any length. It is the location bias of
            Dubois et al. 2020 ("Location Attention for Extrapolation to Longer Sequences") with the reference
            position moving one source token per output token instead of predicted (what the predicted one would
            need, a reference carried from step to step, the KV cache does not hold).
        cross_attention_alignment_max_distance (`int`, defaults to 16): offsets from the diagonal up to this distance
            get buckets of their own (exact to a quarter of the buckets, logarithmic beyond); every farther offset
            shares the last bucket of its side. Keep it below the shortest training source, so that a longer
            source meets only buckets that were trained (with T5's 128 and sources of 16-64 tokens, offsets past 64
            would fall in buckets no training example reaches).
        cross_attention_logn_length (`int | None`, defaults to `None`): log-length scaling of the cross-attention
            (Chiang & Cholak 2022, "Overcoming a Theoretical Limitation of Self-Attention"; Qwen's `use_logn_attn`).
            Over n > this many encoder tokens (n counts each example's unpadded tokens), the decoder's queries to
            the encoder are multiplied by log(n) / log(cross_attention_logn_length), so a token that stood out
            among the trained number of keys stands out as much among n: without it the softmax spreads over
            more keys as n grows. Set it to the training source length; it changes nothing up to that length,
            needs no retraining (`from_pretrained(folder, cross_attention_logn_length=64)`), and took ALiBi passkey
            models trained at 16-64 tokens from 0.81-1.00 exact match at 1024 tokens and 0.59-0.99 at 2048 to 1.00
            at both on three seeds (`scripts/bench_extrapolation.py`, rows `+logn`). Only the cross-attention is
            scaled.

    Long inputs:
        chunked_attention (`"auto" | "always" | "never"`): the query-chunked attention path for the stacks with
            a score bias (relative, alibi, kerple, `relative_bias`), whose memory grows linearly with length.
            `"auto"` uses it once the key length reaches `chunked_attention_min_length`. A stack without a score
            bias (sinusoidal, learned, rope, none) needs no such path in any mode: SDPA's own kernels take it.
        chunked_attention_min_length: the key length from which `"auto"` takes that path (warned about with
            another mode, which does not read it).
        chunked_attention_block_size: queries per block in that path; `None` sizes blocks so that one block of
            scores holds about 2**24 elements (warned about with `"never"`).

    Embeddings:
        scale_embedding: multiply token embeddings by sqrt(d_model) (BART option, Marian). Off by default.
        tie_word_embeddings: share the encoder, decoder and output embedding matrices.
    """

    model_type = "longctx"
    keys_to_ignore_at_inference = ["cache"]
    attribute_map = {
        "hidden_size": "d_model",
        "num_attention_heads": "num_heads",
        "num_hidden_layers": "encoder_layers",
    }

    vocab_size: int = 8000
    d_model: int = 256
    encoder_layers: int = 4
    decoder_layers: int = 4
    num_heads: int = 4
    d_ff: int = 1024
    dropout: float | int = 0.1
    attention_dropout: float | int = 0.0
    activation_dropout: float | int = 0.0
    activation_function: str = "gelu"
    pre_norm: bool = True
    norm_type: str = "layernorm"
    layer_norm_eps: float = 1e-5
    attention_bias: bool = True
    ffn_bias: bool = True
    gated_ffn: bool = False
    init_std: float = 0.02
    initializer: str | None = None

    position_embedding_type: str = "alibi"
    decoder_position_embedding_type: str | None = None
    max_position_embeddings: int = 1024
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    alibi_max_penalty: float | None = 60.0
    relative_bias: bool | None = None
    encoder_conv_kernel: int | None = None
    encoder_local_radius: int | None = None
    cross_attention_logn_length: int | None = None
    cross_attention_alignment: bool = False
    cross_attention_alignment_max_distance: int = 16
    rope_parameters: dict | None = None
    sinusoidal_scale: float = 1.0
    randomized_positions_max_length: int | None = None

    # checkpoint compatibility (see the docstring): set by conversion, defaults for a fresh model
    attention_scale: float | None = None
    embedding_norm: bool = False
    final_logits_bias: bool = False
    decoder_output_scale: float | None = None
    sinusoidal_layout: str = "interleaved"

    chunked_attention: str = "auto"
    chunked_attention_min_length: int = 2048
    chunked_attention_block_size: int | None = None

    scale_embedding: bool = False
    tie_word_embeddings: bool = True
    use_cache: bool = True
    is_encoder_decoder: bool = True
    pad_token_id: int | None = 0
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = 1
    decoder_start_token_id: int | None = 0

    def __post_init__(self, **kwargs):
        kwargs = self._take_foreign_names(kwargs)
        if self.decoder_position_embedding_type is None:
            self.decoder_position_embedding_type = self.position_embedding_type
        if self.rope_parameters is None:
            self.rope_parameters = dict(DEFAULT_ROPE_PARAMETERS)
        else:
            self.rope_parameters = dict(self.rope_parameters)
            self.rope_parameters.setdefault("rope_type", "default")
            self.rope_parameters.setdefault("rope_theta", 10000.0)
            self.standardize_rope_params()  # HF's: yarn's trained length defaults to `max_position_embeddings`
        if self.encoder_conv_kernel is None:  # the encoder's encoding decides (`encoder_conv_kernel_by_default`)
            self.encoder_conv_kernel = _conv_default(self.position_embedding_type)
        if self.initializer is None:  # ... and `initializer_by_default`
            self.initializer = _initializer_default(self.position_embedding_type)
        # Validate here too, not only in `validate_architecture`: `@strict` wraps what that raises in its own
        # exception type, and users (and `pytest.raises`) expect a plain ValueError.
        self.validate_architecture()
        self.validate_rope()
        if self.decoder_output_scale is None:  # T5's: logits from N(0, 1) tied embeddings start at unit scale
            tied_fan_in = self.initializer == "fan_in" and self.tie_word_embeddings
            self.decoder_output_scale = self.d_model**-0.5 if tied_fan_in else 1.0
        self._warn_about_unused_options()
        super().__post_init__(**kwargs)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    @property
    def rotary_dim(self) -> int:
        """How many of a head's dimensions RoPE rotates (the first ones; the rest carry content alone), as HF reads
        `rope_parameters["partial_rotary_factor"]`."""
        return int(self.head_dim * self.rope_parameters.get("partial_rotary_factor", 1.0))

    def stack_encodings(self) -> dict[str, str]:
        return {"encoder": self.position_embedding_type, "decoder": self.decoder_position_embedding_type}

    def has_relative_bias(self, encoding: str) -> bool:
        """Whether a stack with this encoding gets `relative_bias`'s learned bucket bias on its scores."""
        return has_relative_bias(self.relative_bias, encoding)

    def uses_relative_buckets(self, encoding: str) -> bool:
        """Whether a stack with this encoding reads `relative_attention_num_buckets` / `_max_distance`."""
        return encoding == "relative" or self.has_relative_bias(encoding)

    def _take_foreign_names(self, kwargs: dict) -> dict:
        """Map the BART/T5 names of `FOREIGN_NAMES` (and `attribute_map`'s) onto the fields, refuse a misspelt field
        ("did you mean"), warn about any other key nothing reads; return the kwargs left for `PreTrainedConfig`."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        aliases = {**FOREIGN_NAMES, **self.attribute_map}
        taken: dict[str, tuple[str, object]] = {}  # field -> (the name that set it, value)
        decoder_default = fields["decoder_layers"].default
        if "num_layers" in kwargs and "num_decoder_layers" not in kwargs and self.decoder_layers == decoder_default:
            kwargs["num_decoder_layers"] = kwargs["num_layers"]  # T5: num_decoder_layers defaults to num_layers
        for name in [k for k in kwargs if k in aliases]:
            value, target = kwargs.pop(name), aliases[name]
            if target in taken and taken[target][1] != value:
                raise ValueError(
                    f"`{taken[target][0]}`={taken[target][1]!r} and `{name}`={value!r} disagree, but both set "
                    f"`{target}`: hf_longctx uses one `{target}` for the encoder and the decoder. Give one value."
                )
            current, default = getattr(self, target), fields[target].default
            if target not in taken and current != default and current != value:
                raise ValueError(
                    f"`{name}`={value!r} means `{target}` here, which is also given as {current!r}; pass one of the two."
                )
            setattr(self, target, value)
            taken[target] = (name, value)
        if "d_kv" in kwargs:  # T5's head size: here always d_model // num_heads
            d_kv = kwargs.pop("d_kv")
            if d_kv * self.num_heads != self.d_model:
                raise ValueError(
                    f"`d_kv`={d_kv} (T5's head size) needs d_model = num_heads * d_kv, but d_model={self.d_model} and "
                    f"num_heads={self.num_heads}: the head size here is d_model // num_heads; set d_model={d_kv * self.num_heads}."
                )
        if "feed_forward_proj" in kwargs:  # T5: "relu", "gelu", "gated-gelu", ...
            proj = kwargs.pop("feed_forward_proj")
            if not isinstance(proj, str):
                raise ValueError(f"`feed_forward_proj` is T5's '[gated-]<activation>', e.g. 'gated-gelu'; got {proj!r}.")
            # as T5Config reads it: "gated-gelu" is the tanh-approximated gelu (gelu_new)
            activation = "gelu_new" if proj == "gated-gelu" else proj.removeprefix("gated-")
            default = fields["activation_function"].default
            if self.activation_function not in (default, activation):
                raise ValueError(
                    f"`feed_forward_proj`={proj!r} means activation_function={activation!r} here, which is also given "
                    f"as {self.activation_function!r}; pass one of the two."
                )
            self.gated_ffn, self.activation_function = proj.startswith("gated-"), activation
        for name in [k for k in kwargs if k in RETIRED_NAMES and kwargs[k]]:
            raise ValueError(f"`{name}`={kwargs[name]!r} is no longer a field of LongCtxConfig: {RETIRED_NAMES[name]}.")
        foreign = _foreign_config_keys()
        generation = GenerationConfig._get_default_generation_params()
        known = set(fields) | set(aliases) | HF_CONFIG_KEYS | set(generation)
        for name in kwargs:
            if name in generation and kwargs[name] != generation[name]:
                # PreTrainedConfig drops them (transformers 5), as it does for BART / T5: say so, and where they go
                logger.warning(
                    f"LongCtxConfig: `{name}`={kwargs[name]!r} is a generation setting, which transformers 5 keeps in "
                    f"the GenerationConfig, not the model config: it is dropped here. Set "
                    f"`model.generation_config.{name}` (or pass it to `generate`)."
                )
            if name in known:
                continue
            if name in foreign:  # a BART / T5 / Marian option this model does not have: theirs, not a typo of ours
                logger.warning(
                    f"LongCtxConfig: `{name}` (an option of BART / T5 / Marian configs) has no counterpart here; it is "
                    "kept on the config, but nothing in the model reads it."
                )
                continue
            close = difflib.get_close_matches(name, list(fields) + list(aliases), n=1, cutoff=0.8)
            if close:
                raise ValueError(f"`{name}` is not a field of LongCtxConfig; did you mean `{close[0]}`?")
            logger.warning(
                f"LongCtxConfig: `{name}` is not one of its fields; it is kept on the config (as transformers keeps "
                "extra keys), but nothing in the model reads it."
            )
        return kwargs

    @classmethod
    def accepted_names(cls) -> set[str]:
        """Every name the config takes: its fields, the BART / T5 names it maps (and `attribute_map`'s)."""
        return {f.name for f in dataclasses.fields(cls)} | set(FOREIGN_NAMES) | set(cls.attribute_map) | T5_ONLY_NAMES

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        """As `PreTrainedConfig.from_dict`, but keyword arguments that name a field (or a BART / T5 name of one)
        join the dict before the config is built, so `from_pretrained(folder, dropout=1.5)` meets the same checks
        and name mapping as `LongCtxConfig(dropout=1.5)` (transformers would set them afterwards, unchecked)."""
        names = cls.accepted_names()
        config_dict = dict(config_dict)
        if "model_type" in config_dict:  # a saved config: the fields it predates take the values it was made with
            for name, before in SAVED_BEFORE.items():
                config_dict.setdefault(name, before)
        for name in [k for k in kwargs if k in names]:
            config_dict[name] = kwargs.pop(name)
        # a saved dict already holds every field: its mapped names must not count as given twice
        for alias, target in {**FOREIGN_NAMES, **cls.attribute_map}.items():
            if alias in config_dict and target in config_dict and config_dict[alias] != config_dict[target]:
                config_dict.pop(target)
        return super().from_dict(config_dict, **kwargs)

    def validate_rope(self):
        """HF's RoPE checks (an even head size, the scaling's keys) only where a stack uses RoPE."""
        if "rope" in (self.position_embedding_type, self.decoder_position_embedding_type):
            super().validate_rope()

    @staticmethod
    def _check_received_keys(rope_type, received_keys, required_keys, optional_keys=None, ignore_keys=None):
        """HF's check of `rope_parameters`' keys, with a key the scaling does not read refused (HF only warns: a
        misspelled `rope_theta` would silently keep the default base)."""
        known = set(required_keys) | set(optional_keys or ()) | set(ignore_keys or ()) | {"partial_rotary_factor"}
        unknown = set(received_keys) - known - {"type"}
        if unknown:
            raise ValueError(
                f"`rope_parameters` has {', '.join(map(repr, sorted(unknown)))}, which rope_type={rope_type!r} does "
                f"not read; its keys: {', '.join(sorted(known))}."
            )
        PreTrainedConfig._check_received_keys(rope_type, received_keys, required_keys, optional_keys, ignore_keys)

    def validate_architecture(self):
        """Part of `@strict` validation: every bad value names its field and the fix."""
        for field in ("vocab_size", "d_model", "num_heads", "encoder_layers", "decoder_layers", "d_ff"):
            if getattr(self, field) < 1:
                raise ValueError(f"`{field}` must be a positive integer, got {getattr(self, field)}.")
        for field in ("dropout", "attention_dropout", "activation_dropout"):
            if not 0 <= getattr(self, field) < 1:
                raise ValueError(
                    f"`{field}` is a probability of dropping a unit and must be in [0, 1), got {getattr(self, field)}; "
                    "0 turns it off."
                )
        if self.encoder_conv_kernel is None:  # resolved in __post_init__: set to None after the config was built
            raise ValueError(
                "`encoder_conv_kernel` is None, which only a new config resolves (by its encoder's encoding: "
                f"{self.position_embedding_type!r} takes {_conv_default(self.position_embedding_type)}); give the "
                "number of tokens, 0 for none."
            )
        if self.encoder_conv_kernel < 0:
            raise ValueError(
                f"`encoder_conv_kernel` is a number of tokens (the current one and those before it) and must be an "
                f"integer >= 0, got {self.encoder_conv_kernel!r}; 0 turns the convolution off."
            )
        for field, what in (
            ("layer_norm_eps", "is added to the variance before its square root"),
            ("init_std", "is the standard deviation of the initial weights"),
            ("sinusoidal_scale", "is the amplitude of the sinusoid table"),
            ("decoder_output_scale", "multiplies the decoder's output before the vocabulary projection"),
        ):
            value = getattr(self, field)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"`{field}` {what} and must be a finite number > 0, got {value}.")
        default_distance = type(self).cross_attention_alignment_max_distance
        if not self.cross_attention_alignment and self.cross_attention_alignment_max_distance != default_distance:
            raise ValueError(
                f"`cross_attention_alignment_max_distance`={self.cross_attention_alignment_max_distance} shapes the "
                "bias of `cross_attention_alignment`, which is off: set cross_attention_alignment=True, or drop it "
                f"(for a saved config: pass cross_attention_alignment_max_distance={default_distance} with it)."
            )
        if self.chunked_attention_min_length < 1:
            raise ValueError(
                f"`chunked_attention_min_length` is a key length and must be a positive integer, got "
                f"{self.chunked_attention_min_length}; `chunked_attention='always'` takes the path at every length."
            )
        for field in ("pad_token_id", "bos_token_id", "decoder_start_token_id", "eos_token_id"):
            ids = getattr(self, field, None)
            for token_id in ids if isinstance(ids, list | tuple) else [ids]:
                if token_id is not None and not 0 <= token_id < self.vocab_size:
                    raise ValueError(
                        f"`{field}`={ids} is not a token of the vocabulary (`vocab_size`={self.vocab_size}): give an id "
                        f"in [0, {self.vocab_size - 1}] (the tokenizer's), or None."
                    )
        if self.attention_scale is not None and not self.attention_scale > 0:
            raise ValueError(
                f"`attention_scale` multiplies q.k and must be > 0, or None for 1/sqrt(head_dim); got {self.attention_scale}."
            )
        if self.d_model % self.num_heads != 0:
            raise ValueError(
                f"`d_model` ({self.d_model}) must be divisible by `num_heads` ({self.num_heads}); "
                f"choose e.g. num_heads={_divisor_near(self.d_model, self.num_heads)}."
            )
        encodings = _position_encodings()
        for field in ("position_embedding_type", "decoder_position_embedding_type"):
            value = getattr(self, field)
            if value not in encodings:
                raise ValueError(
                    f"`{field}`={value!r} is not a known position encoding; valid values: {', '.join(encodings)} "
                    "(or one registered with `hf_longctx.positions.register_position_encoding`)."
                )
        if not encodings[self.position_embedding_type].encoder_allowed:
            raise ValueError(
                f"`position_embedding_type`={self.position_embedding_type!r} is a decoder-only encoding (for 'none': the "
                "encoder would be order-blind, a bag of tokens). Give the encoder an encoding (e.g. 'alibi' or "
                f"'relative') and set `decoder_position_embedding_type`={self.position_embedding_type!r} for the decoder."
            )
        if self.relative_bias and not any(self.has_relative_bias(e) for e in self.stack_encodings().values()):
            raise ValueError(
                f"`relative_bias`=True adds T5's learned bias to a stack encoded with one of "
                f"{', '.join(n for n, cls in encodings.items() if cls.takes_relative_bias)}, but the encoder is {self.position_embedding_type!r} and the decoder "
                f"{self.decoder_position_embedding_type!r} ('relative' is that bias already); drop `relative_bias`."
            )
        self._validate_relative_buckets()
        uses_rope = "rope" in (self.position_embedding_type, self.decoder_position_embedding_type)
        fraction = self.rope_parameters.get("partial_rotary_factor", 1.0)
        if not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
            raise ValueError(
                f"`rope_parameters['partial_rotary_factor']` is the fraction of each head's dimensions that RoPE "
                f"rotates and must be in (0, 1], got {fraction!r}."
            )
        if uses_rope and (self.rotary_dim % 2 != 0 or self.rotary_dim < 2):
            raise ValueError(
                f"position_embedding_type='rope' rotates pairs of dimensions, so the rotated part of a head, "
                f"int(head_dim * partial_rotary_factor) = int({self.head_dim} * {fraction}) = {self.rotary_dim}, "
                "must be even and at least 2; change `d_model`, `num_heads` or `rope_parameters['partial_rotary_factor']`."
            )
        rope_type = self.rope_parameters.get("rope_type")
        if rope_type not in ROPE_TYPES:
            raise ValueError(
                f"`rope_parameters['rope_type']`={rope_type!r} is not supported; valid: {', '.join(ROPE_TYPES)}."
            )
        if rope_type != "default" and not self.rope_parameters.get("factor"):
            raise ValueError(
                f"`rope_parameters` with rope_type={rope_type!r} needs a scaling `factor` "
                "(target length / trained length), e.g. {'rope_type': 'yarn', 'factor': 4.0}."
            )
        factor = self.rope_parameters.get("factor")
        if factor is not None and not factor >= 1:
            raise ValueError(
                f"`rope_parameters['factor']` is target length / trained length and must be >= 1 (a scaling stretches "
                f"the trained positions over a longer input), got {factor}."
            )
        theta = self.rope_parameters.get("rope_theta")
        if theta is not None and not theta > 0:
            raise ValueError(f"`rope_parameters['rope_theta']` is RoPE's base and must be > 0 (default 10000), got {theta}.")
        trained = self.rope_parameters.get("original_max_position_embeddings")
        if trained is not None and not trained >= 1:
            raise ValueError(
                f"`rope_parameters['original_max_position_embeddings']` is the trained length and must be >= 1, got {trained}."
            )
        if self.activation_function not in ACT2FN:
            raise ValueError(
                f"`activation_function`={self.activation_function!r} is unknown; use a key of "
                "transformers.activations.ACT2FN, e.g. 'gelu', 'relu', 'silu', 'gelu_new'."
            )
        if self.sinusoidal_layout not in SINUSOIDAL_LAYOUTS:
            raise ValueError(
                f"`sinusoidal_layout`={self.sinusoidal_layout!r} is not supported; valid: {', '.join(SINUSOIDAL_LAYOUTS)}."
            )
        bound = self.randomized_positions_max_length
        if bound is not None:
            if bound < 1:
                raise ValueError(f"`randomized_positions_max_length` must be a positive integer or None, got {bound}.")
            if self.position_embedding_type == "learned" and bound > self.max_position_embeddings:
                raise ValueError(
                    f"`randomized_positions_max_length`={bound} exceeds the learned table "
                    f"(`max_position_embeddings`={self.max_position_embeddings}); grow the table or lower the bound."
                )
        if self.encoder_local_radius is not None:
            if self.encoder_local_radius < 1:
                raise ValueError(
                    f"`encoder_local_radius` is the distance within which encoder tokens attend to each other and must "
                    f"be an integer >= 1, got {self.encoder_local_radius}; None attends to the whole source."
                )
            if bound is not None:
                raise ValueError(
                    f"`encoder_local_radius`={self.encoder_local_radius} masks keys by their distance in positions, and "
                    f"`randomized_positions_max_length`={bound} spreads neighbouring tokens' positions apart in "
                    "training; set one of them to None."
                )
        # (types are checked by `@strict` before this runs: a string or a bool fails there, naming the field)
        if self.alibi_max_penalty is not None and not self.alibi_max_penalty > 0:
            raise ValueError(
                f"`alibi_max_penalty` must be > 0 (the ALiBi penalty past which keys are masked) or None for the "
                f"exact penalty at every distance, got {self.alibi_max_penalty}."
            )
        if self.cross_attention_logn_length is not None and self.cross_attention_logn_length < 2:
            raise ValueError(
                f"`cross_attention_logn_length` must be the training source length (an integer >= 2, the base of "
                f"the log) or None to turn the scaling off, got {self.cross_attention_logn_length}."
            )
        if self.initializer is None:  # resolved in __post_init__: set to None after the config was built
            raise ValueError(
                "`initializer` is None, which only a new config resolves (by its encoder's encoding: "
                f"{self.position_embedding_type!r} takes {_initializer_default(self.position_embedding_type)!r}); "
                f"give one of {', '.join(INITIALIZERS)}."
            )
        if self.initializer not in INITIALIZERS:
            raise ValueError(f"`initializer`={self.initializer!r} is not supported; valid: {', '.join(INITIALIZERS)}.")
        if self.norm_type not in NORM_TYPES:
            raise ValueError(f"`norm_type`={self.norm_type!r} is not supported; valid: {', '.join(NORM_TYPES)}.")
        if self.chunked_attention not in CHUNKED_ATTENTION_MODES:
            raise ValueError(
                f"`chunked_attention`={self.chunked_attention!r} is not supported; "
                f"valid: {', '.join(CHUNKED_ATTENTION_MODES)}."
            )
        if self.chunked_attention_block_size is not None and self.chunked_attention_block_size < 1:
            raise ValueError(
                f"`chunked_attention_block_size` must be a positive integer or None, got {self.chunked_attention_block_size}."
            )
        for field in ("max_position_embeddings", "relative_attention_num_buckets", "relative_attention_max_distance"):
            if getattr(self, field) < 1:
                raise ValueError(f"`{field}` must be a positive integer, got {getattr(self, field)}.")

    def _validate_relative_buckets(self):
        """T5's bucketing: a stack's buckets are half exact distances (max_exact of them) and half logarithmic up to
        `relative_attention_max_distance`, which must lie beyond the exact ones (log(max_distance / max_exact) > 0)."""
        buckets = self.relative_attention_num_buckets
        stacks = [name for name, kind in self.stack_encodings().items() if self.uses_relative_buckets(kind)]
        for stack in stacks + (["cross-attention"] if self.cross_attention_alignment else []):
            distance_field = (
                "cross_attention_alignment_max_distance" if stack == "cross-attention" else "relative_attention_max_distance"
            )
            distance = getattr(self, distance_field)
            # the encoder (and the alignment) splits its buckets between the two directions, the causal decoder
            # uses all for one
            per_direction = buckets if stack == "decoder" else buckets // 2
            max_exact = per_direction // 2
            if max_exact < 1:
                raise ValueError(
                    f"`relative_attention_num_buckets`={buckets} leaves the {stack} no exact-distance bucket; use at "
                    f"least {2 if stack == 'decoder' else 4} (T5 uses 32)."
                )
            if distance <= max_exact:
                raise ValueError(
                    f"`{distance_field}`={distance} must exceed the {max_exact} exact-distance buckets "
                    f"of the {stack} (`relative_attention_num_buckets`={buckets}); use e.g. {4 * max_exact} "
                    "(T5: 32 buckets, max distance 128)."
                )

    def _warn_about_unused_options(self):
        """An option the chosen encodings never read is most likely a mistake: say so once (values equal to the
        defaults are what every saved config carries, so they say nothing)."""
        used = set(self.stack_encodings().values())
        if any(self.has_relative_bias(encoding) for encoding in used):
            used.add("relative")  # its bucket options shape `relative_bias` too
        fields = {f.name: f for f in dataclasses.fields(self)}
        encodings = _position_encodings()
        read = {name for encoding in used if encoding in encodings for name in encodings[encoding].options}
        if self.cross_attention_alignment:
            read.add("relative_attention_num_buckets")  # (its distance is `cross_attention_alignment_max_distance`)
        for encoding, cls in encodings.items():
            if encoding in used:
                continue
            for name in (option for option in cls.options if option not in read):  # another encoding may read it
                default = fields[name].default
                if getattr(self, name) != default:
                    logger.warning_once(
                        f"LongCtxConfig: `{name}`={getattr(self, name)!r} does nothing without a {encoding!r} stack"
                        + (" or `relative_bias`" if encoding == "relative" else "")
                        + (" or `cross_attention_alignment`" if name == "relative_attention_num_buckets" else "")
                        + " "
                        f"(encodings here: {', '.join(sorted(used))})."
                    )
        if self.initializer == "fan_in" and self.init_std != fields["init_std"].default and not self.encoder_conv_kernel:
            logger.warning_once(
                f"LongCtxConfig: `init_std`={self.init_std} does nothing with initializer='fan_in' (T5's stds, from "
                "each layer's fan-in); set initializer='normal' for N(0, init_std)."
            )
        # warned, not refused: a saved config keeps the value, and `from_pretrained(..., chunked_attention=...)` changes
        # the mode of a model saved with it
        if self.chunked_attention != "auto" and self.chunked_attention_min_length != fields["chunked_attention_min_length"].default:
            logger.warning_once(
                f"LongCtxConfig: `chunked_attention_min_length`={self.chunked_attention_min_length} does nothing with "
                f"chunked_attention={self.chunked_attention!r} (it is the length from which 'auto' takes the chunked "
                "path)."
            )
        if self.chunked_attention == "never" and self.chunked_attention_block_size is not None:
            logger.warning_once(
                f"LongCtxConfig: `chunked_attention_block_size`={self.chunked_attention_block_size} does nothing with "
                "chunked_attention='never' (no chunked path)."
            )
        if "rope" not in used and self.rope_parameters != DEFAULT_ROPE_PARAMETERS:
            logger.warning_once(
                f"LongCtxConfig: `rope_parameters`={self.rope_parameters} does nothing without a 'rope' stack "
                f"(encodings here: {', '.join(sorted(used))})."
            )


DEFAULT_ROPE_PARAMETERS = {"rope_type": "default", "rope_theta": 10000.0}


def _position_encodings() -> dict:
    """The registry of encoding classes, whose attributes hold what the config checks (`positions.py`; imported
    here, not at the top, because `positions.py` imports this module)."""
    from .positions import POSITION_ENCODINGS

    return POSITION_ENCODINGS


def _conv_default(encoding: str) -> int:
    """`encoder_conv_kernel=None` for an encoder with this encoding (0 for a name the registry lacks: refused later)."""
    cls = _position_encodings().get(encoding)
    return cls.encoder_conv_kernel_by_default if cls is not None else 0


def _initializer_default(encoding: str) -> str:
    """`initializer=None` for a model whose encoder has this encoding ("normal" for a name the registry lacks)."""
    cls = _position_encodings().get(encoding)
    return cls.initializer_by_default if cls is not None else "normal"


def has_relative_bias(relative_bias: bool | None, encoding: str) -> bool:
    """`relative_bias` per stack: True adds it to every stack it can go on (`takes_relative_bias`), None (the
    default) to the stacks whose encoding has `relative_bias_by_default`, False to none. (Also read by the model
    card, from a saved config's dict.)"""
    cls = _position_encodings().get(encoding)
    if cls is None or relative_bias is False:
        return False
    return cls.relative_bias_by_default if relative_bias is None else cls.takes_relative_bias


# Defaults that changed, with the value a saved config that lacks the field was made with (saved configs hold
# every field that existed when they were written, so a missing one predates it).
SAVED_BEFORE = {"relative_bias": False, "decoder_output_scale": 1.0, "encoder_conv_kernel": 0, "initializer": "normal"}


def _foreign_config_keys() -> set[str]:
    """The options of BART, Marian and T5 configs (their defaults' keys), for telling theirs from our typos."""
    global _FOREIGN_KEYS
    if _FOREIGN_KEYS is None:
        from transformers import BartConfig, MarianConfig, T5Config

        _FOREIGN_KEYS = {key for cls in (BartConfig, MarianConfig, T5Config) for key in cls().to_dict()}
    return _FOREIGN_KEYS


_FOREIGN_KEYS: set[str] | None = None


def _divisor_near(n: int, target: int) -> int:
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: abs(d - target))


__all__ = ["LongCtxConfig"]
