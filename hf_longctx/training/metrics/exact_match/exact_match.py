"""Exact match: the share of predictions equal to their reference, as strings (an `evaluate` module).

Same layout as the hub's metrics (`<name>/<name>.py` holding one `evaluate.Metric`), shipped with hf_longctx so that
`evaluate.load("hf_longctx/training/metrics/exact_match")` works offline (by path, no hub lookup).
"""

import datasets
import evaluate

_DESCRIPTION = """
Exact match: the fraction of predictions that equal their reference string. Whitespace runs are collapsed and
leading/trailing whitespace stripped first (word-level tokenizers decode with single spaces), and case can be
ignored.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): predicted strings.
    references (`list` of `str`): reference strings, one per prediction.
    ignore_case (`bool`, defaults to `False`): compare lower-cased strings.
    normalize_whitespace (`bool`, defaults to `True`): collapse whitespace runs and strip both ends.
Returns:
    exact_match (`float`): in [0, 1]; 1.0 means every prediction matched.
Examples:
    >>> exact_match = evaluate.load("hf_longctx/training/metrics/exact_match")
    >>> exact_match.compute(predictions=["1 2 3", "4 5"], references=["1 2 3", "4 6"])
    {'exact_match': 0.5}
"""

_CITATION = ""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ExactMatch(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string", id="sequence"),
                    "references": datasets.Value("string", id="sequence"),
                }
            ),
        )

    def _compute(self, predictions, references, ignore_case=False, normalize_whitespace=True):
        def normalize(text):
            text = " ".join(text.split()) if normalize_whitespace else text
            return text.lower() if ignore_case else text

        matches = [normalize(p) == normalize(r) for p, r in zip(predictions, references, strict=True)]
        return {"exact_match": sum(matches) / len(matches) if matches else 0.0}
