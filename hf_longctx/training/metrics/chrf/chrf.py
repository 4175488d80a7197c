"""chrF (and chrF++) with corpus BLEU alongside, both computed by `sacrebleu` (an `evaluate` module).

Same layout as the hub's metrics (`<name>/<name>.py` holding one `evaluate.Metric`), shipped with hf_longctx so that
`evaluate.load("hf_longctx/training/metrics/chrf")` works offline (by path, no hub lookup).
"""

import datasets
import evaluate
import sacrebleu

_DESCRIPTION = """
chrF: the character n-gram F-score of Popović (2015); with `word_order=2` it is chrF++ (Popović 2017). Corpus BLEU
(Papineni et al. 2002) is reported alongside. Both come from sacrebleu (Post 2018), so scores are comparable with
published sacrebleu numbers (0-100 scale).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): predicted strings.
    references (`list` of `str`, or `list` of `list` of `str`): one reference per prediction, or several (every
        prediction must then have the same number of references).
    char_order (`int`, defaults to 6), word_order (`int`, defaults to 0; 2 gives chrF++), beta (`int`, defaults
        to 2): chrF settings, as in `sacrebleu.CHRF`.
Returns:
    chrf (`float`), bleu (`float`): corpus scores in [0, 100]; char_order, word_order, beta: the settings used.
Examples:
    >>> chrf = evaluate.load("hf_longctx/training/metrics/chrf")
    >>> chrf.compute(predictions=["the cat sat"], references=["the cat sat"])["chrf"]
    100.0
"""

_CITATION = """
@inproceedings{popovic-2015-chrf, title = "chr{F}: character n-gram {F}-score for automatic {MT} evaluation",
  author = "Popovi{\\'c}, Maja", booktitle = "Proceedings of the Tenth Workshop on Statistical Machine Translation",
  year = "2015", pages = "392--395"}
@inproceedings{post-2018-call, title = "A Call for Clarity in Reporting {BLEU} Scores", author = "Post, Matt",
  booktitle = "Proceedings of the Third Conference on Machine Translation", year = "2018", pages = "186--191"}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Chrf(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            homepage="https://github.com/mjpost/sacrebleu",
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Value("string", id="sequence"),
                        "references": datasets.Sequence(datasets.Value("string", id="sequence"), id="references"),
                    }
                ),
                datasets.Features(
                    {
                        "predictions": datasets.Value("string", id="sequence"),
                        "references": datasets.Value("string", id="sequence"),
                    }
                ),
            ],
        )

    def _compute(self, predictions, references, char_order=6, word_order=0, beta=2):
        if references and isinstance(references[0], str):
            references = [[reference] for reference in references]
        num_refs = len(references[0]) if references else 0
        if any(len(refs) != num_refs for refs in references):
            raise ValueError("`references`: every prediction needs the same number of references for sacrebleu.")
        # sacrebleu wants one stream per reference slot: transpose (sample, slot) -> (slot, sample).
        streams = [[refs[i] for refs in references] for i in range(num_refs)]
        chrf = sacrebleu.CHRF(char_order=char_order, word_order=word_order, beta=beta)
        return {
            "chrf": chrf.corpus_score(predictions, streams).score,
            "bleu": sacrebleu.BLEU().corpus_score(predictions, streams).score,
            "char_order": char_order,
            "word_order": word_order,
            "beta": beta,
        }
