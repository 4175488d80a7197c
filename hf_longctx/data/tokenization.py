"""The word-level tokenizer of the synthetic tasks (`data/tasks.py`), built with the `tokenizers` library.

One whitespace-separated word is one token. Ids 0/1/2 are pad/EOS/unk, matching `LongCtxConfig`'s defaults
(`pad_token_id=0`, `eos_token_id=1`, `decoder_start_token_id=0`), so a model built from the config defaults and
this tokenizer agree without extra arguments. Every encoded sequence ends with EOS (a `TemplateProcessing` post-
processor, as T5 does), for sources and targets alike: the decoder learns to stop, and `generate` stops there.

The tokenizer is a plain `PreTrainedTokenizerFast`: `save_pretrained(folder)` writes `tokenizer.json` and
`AutoTokenizer.from_pretrained(folder)` loads it back without hf_longctx installed.
"""

from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from .tasks import DIGITS, LETTERS, MARKERS

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
SPECIAL_TOKENS = [PAD, EOS, UNK]  # ids 0, 1, 2
VOCAB = SPECIAL_TOKENS + DIGITS + LETTERS + MARKERS


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A fresh tokenizer over `VOCAB` (specials first, so pad=0, eos=1, unk=2)."""
    vocab = {token: i for i, token in enumerate(VOCAB)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return wrap_tokenizer(backend)


def wrap_tokenizer(backend: Tokenizer, extra_special_tokens: list[str] | None = None) -> PreTrainedTokenizerFast:
    """EOS appended to every sequence, and the HF wrapper with this project's pad/eos/unk (ids 0, 1, 2)."""
    eos_id = backend.token_to_id(EOS)
    backend.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}", special_tokens=[(EOS, eos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        eos_token=EOS,
        unk_token=UNK,
        extra_special_tokens=extra_special_tokens or [],
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )
