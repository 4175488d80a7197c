# SHIM, not transformers code. See tests/hf_common/README.md.
#
# transformers' tests/test_modeling_common.py (v5.24.0) imports `GenerationTesterMixin` from
# tests/generation/test_utils.py, which the PyPI sdist does not ship. The only stored copies of that file we
# could reach are far older than v5.24 (they import `GreedySearchDecoderOnlyOutput`, `BeamSearchScorer`,
# `DisjunctiveConstraint`, `QuantoQuantizedCache`, `require_torch_sdpa`, ... which transformers 5.24 no longer
# has), so they cannot run here. This empty mixin only satisfies the import; it adds no tests.
# ModelTesterMixin uses the name in one place, `test_generation_tester_mixin_inheritance`, which
# tests/test_hf_common.py skips with that reason.


class GenerationTesterMixin:
    """Empty stand-in for transformers' tests/generation/test_utils.py::GenerationTesterMixin."""

    model_tester = None
    all_generative_model_classes = ()
    input_name = "input_ids"
    max_new_tokens = 3
