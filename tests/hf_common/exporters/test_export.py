# SHIM, not transformers code. See tests/hf_common/README.md.
#
# transformers' tests/test_modeling_common.py (v5.24.0) imports `ExportTesterMixin` from
# tests/exporters/test_export.py and makes it the base class of `ModelTesterMixin`. The PyPI sdist does not ship
# that file, and the only stored copy we could reach is newer than v5.24: it imports modules the installed
# transformers 5.24 lacks (`transformers.exporters.components`, `.decompose`, `.exporter_aoti`,
# `.exporter_tensorrt`, `.utils`). Its tests need torch.export plus optional backends (onnxruntime, executorch,
# openvino, tensorrt) and are out of scope for this CPU suite. This empty base class only satisfies the import;
# ModelTesterMixin's own tests are unchanged.


class ExportTesterMixin:
    """Empty stand-in for transformers' tests/exporters/test_export.py::ExportTesterMixin."""
