"""Past the trained length, does an encoder window of the trained length (every token sees what it saw in
training) keep the multi-key answer? Inference-only: the ALiBi encoder bias masked past |offset| >= W."""
# Usage (README.md here): python window_probe.py MODEL_FOLDER TASK LENGTHS NUM_EVAL WINDOWS
import sys, torch
from pathlib import Path
from hf_longctx.bench.extrapolation import load_model, exact_match_at_length
from hf_longctx.data.tokenization import build_tokenizer
from hf_longctx import positions as P
folder = Path(sys.argv[1]); task = sys.argv[2]; lengths = [int(x) for x in sys.argv[3].split(",")]
num_eval = int(sys.argv[4]); windows = [int(w) for w in sys.argv[5].split(",")]
tok = build_tokenizer()
orig = P.OffsetBias.bias
for W in windows:
    def bias(self, q, k, W=W):
        b = orig(self, q, k)
        if W and not self.causal and b.shape[-1] > W:
            off = (k[..., None, :] - q[..., :, None]).abs()
            b = b.masked_fill(off >= W, P.ALIBI_CUT_BIAS)
        return b
    P.OffsetBias.bias = bias
    model = load_model(folder, None, None)
    model.config.chunked_attention = "never"
    for m in model.modules():
        if hasattr(m, "config") and hasattr(m.config, "chunked_attention"): m.config.chunked_attention = "never"
    row = {n: exact_match_at_length(model, tok, task, n, num_eval, 10_000 + n, 32)["exact_match"] for n in lengths}
    print("window", W, row, flush=True)
