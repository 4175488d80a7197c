"""Token accuracy of generated sequences: position-wise matches against the reference (an `evaluate` module).

Same layout as the hub's metrics (`<name>/<name>.py` holding one `evaluate.Metric`), shipped with hf_longctx so that
`evaluate.load("hf_longctx/training/metrics/token_accuracy")` works offline (by path, no hub lookup).
"""

import datasets
import evaluate

_DESCRIPTION = """
Token accuracy of generated sequences. Prediction and reference are compared position by position; the score is
the number of matching positions over the number of positions of the longer of the two, summed over the corpus
(a micro average). Missing tokens and extra tokens both count as errors, so a prediction scores 1.0 only when it
equals its reference. Tokens are strings (e.g. `text.split()`) or integer ids.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `str` or `int`): predicted token sequences.
    references (`list` of `list` of `str` or `int`): reference token sequences, one per prediction.
Returns:
    token_accuracy (`float`): in [0, 1] (0.0 when every sequence is empty).
Examples:
    >>> token_accuracy = evaluate.load("hf_longctx/training/metrics/token_accuracy")
    >>> token_accuracy.compute(predictions=[["a", "b", "c"], ["x"]], references=[["a", "b", "d"], ["x", "y"]])
    {'token_accuracy': 0.6}
"""

_CITATION = ""


def _features(value_type):
    return datasets.Features(
        {
            "predictions": datasets.Sequence(datasets.Value(value_type)),
            "references": datasets.Sequence(datasets.Value(value_type)),
        }
    )


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TokenAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # Strings first: an id list fails the string check, while digit strings would pass as int64.
            features=[_features("string"), _features("int64")],
        )

    def _compute(self, predictions, references):
        correct = total = 0
        for prediction, reference in zip(predictions, references, strict=True):
            # Unequal lengths: compare the overlap; the longer length below counts the rest as errors.
            correct += sum(p == r for p, r in zip(prediction, reference, strict=False))
            total += max(len(prediction), len(reference))
        return {"token_accuracy": correct / total if total else 0.0}
