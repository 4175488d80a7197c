"""The shipped accelerate configs parse, and FSDP wraps exactly the model's `_no_split_modules`."""

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import ClusterConfig
from accelerate.utils import DistributedType

from hf_longctx import LongCtxForConditionalGeneration

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "accelerate"


@pytest.mark.parametrize(
    "name,kind",
    [
        ("ddp", DistributedType.MULTI_GPU),
        ("fsdp", DistributedType.FSDP),
        ("deepspeed_zero2", DistributedType.DEEPSPEED),
        ("deepspeed_zero3", DistributedType.DEEPSPEED),
    ],
)
def test_config_parses(name, kind):
    config = ClusterConfig.from_yaml_file(CONFIGS / f"{name}.yaml")
    assert config.distributed_type == kind
    if kind == DistributedType.DEEPSPEED:
        assert config.deepspeed_config["zero_stage"] == int(name[-1])


def test_fsdp_wraps_the_no_split_modules():
    config = ClusterConfig.from_yaml_file(CONFIGS / "fsdp.yaml")
    wrapped = config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"].split(",")
    assert sorted(wrapped) == sorted(LongCtxForConditionalGeneration._no_split_modules)
