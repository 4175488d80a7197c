# SHIM, not the whole transformers file. See tests/hf_common/README.md.
#
# transformers' tests/test_configuration_common.py imports `config_common_kwargs` from
# tests/utils/test_configuration_utils.py, which the PyPI sdist does not ship. That module is a set of hub-bound
# unit tests of PreTrainedConfig itself; only this dict is needed by `ConfigTester.check_config_arguments_init`.
# Copied verbatim from the transformers-v5 version of that file (Apache-2.0, Copyright 2019 HuggingFace Inc.):
# one non-default value for each common `PreTrainedConfig` attribute.

config_common_kwargs = {
    "return_dict": False,
    "output_hidden_states": True,
    "output_attentions": True,
    "dtype": "float16",
    "chunk_size_feed_forward": 5,
    "architectures": ["BertModel"],
    "id2label": {0: "label"},
    "label2id": {"label": "0"},
    "problem_type": "regression",
}
