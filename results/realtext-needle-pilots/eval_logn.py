"""Re-score a scratch2 needle model with logn at inference: `python eval_logn.py FOLDER TRAINED N [N...]`."""
import json, sys, time
from pathlib import Path
from hf_longctx.bench.realtext import RealTextArguments, corpus_documents, needle_exact_match
from hf_longctx.bench.extrapolation import load_model
from hf_longctx.data.text import needle_haystack_dataset

folder, trained = sys.argv[1], int(sys.argv[2])
args = RealTextArguments(encodings=["alibi"], references=[])
tokenizer, train_docs, test_docs = corpus_documents(args)
model = load_model(Path(folder), None, trained).eval()
out = {}
t = time.time()
for n in [int(a) for a in sys.argv[3:]]:
    held_out = needle_haystack_dataset(test_docs, tokenizer, [n] * 50, seed=5, stratify_depth=True)
    out[n] = needle_exact_match(model, held_out, tokenizer, 16384)
    print(n, {k: out[n][k] for k in ("exact_match", "exact_match_by_depth")}, out[n]["examples"][:2], time.time() - t, flush=True)
Path(folder + "-logn.json").write_text(json.dumps(out, indent=1))
