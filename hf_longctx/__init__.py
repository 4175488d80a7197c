"""hf_longctx: an HF-native encoder-decoder Transformer for long inputs.

Importing the package registers the config and models with the Auto classes, and marks them for
`save_pretrained` to copy their code and write an `auto_map` (so a saved folder loads with
`trust_remote_code=True` where hf_longctx is not installed).
"""

from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM

from .configuration_longctx import LongCtxConfig
from .modeling_longctx import LongCtxForConditionalGeneration, LongCtxModel, LongCtxPreTrainedModel
from .positions import POSITION_ENCODINGS, register_position_encoding

__version__ = "0.1.0"

AutoConfig.register(LongCtxConfig.model_type, LongCtxConfig, exist_ok=True)
AutoModel.register(LongCtxConfig, LongCtxModel, exist_ok=True)
AutoModelForSeq2SeqLM.register(LongCtxConfig, LongCtxForConditionalGeneration, exist_ok=True)
LongCtxConfig.register_for_auto_class()
LongCtxModel.register_for_auto_class("AutoModel")
LongCtxForConditionalGeneration.register_for_auto_class("AutoModelForSeq2SeqLM")

__all__ = [
    "LongCtxConfig",
    "LongCtxModel",
    "LongCtxForConditionalGeneration",
    "LongCtxPreTrainedModel",
    "POSITION_ENCODINGS",
    "register_position_encoding",
]
