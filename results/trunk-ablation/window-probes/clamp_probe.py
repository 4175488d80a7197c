"""Do a learned bias's untrained far buckets hurt past the trained length? Clamp them to the last trained one."""
# Scratch probe (results/trunk-ablation/window-probes/README.md): python clamp_probe.py MODEL_FOLDER TASK LENGTHS [NUM_EVAL]
import sys, torch
from pathlib import Path
from transformers.models.t5.modeling_t5 import T5Attention
from hf_longctx.bench.extrapolation import load_model, exact_match_at_length
from hf_longctx.data.tokenization import build_tokenizer
from hf_longctx.positions import RelativePositions
folder = Path(sys.argv[1]); task = sys.argv[2]; lengths = [int(x) for x in sys.argv[3].split(",")]
num_eval = int(sys.argv[4]) if len(sys.argv) > 4 else 100
train_max = int(sys.argv[5]) if len(sys.argv) > 5 else 64
tok = build_tokenizer()
for mode in ("as trained", "clamped"):
    model = load_model(folder, None, None)
    if mode == "clamped":
        for m in model.modules():
            if not isinstance(m, RelativePositions): continue
            w = m.relative_attention_bias.weight.data
            rel = torch.arange(-train_max + 1, train_max)
            b = T5Attention._relative_position_bucket(rel, bidirectional=not m.causal, num_buckets=m.num_buckets, max_distance=m.max_distance)
            used = set(b.tolist())
            nb = m.num_buckets // (1 if m.causal else 2)
            for side in ([0] if m.causal else [0, nb]):
                last = max(x for x in used if side <= x < side + nb)
                print("causal" if m.causal else "bidir", "side", side, "last trained", last)
                for x in range(last + 1, side + nb):
                    w[x] = w[last]
    row = {n: exact_match_at_length(model, tok, task, n, num_eval, 10_000 + n, 32)["exact_match"] for n in lengths}
    print(mode, row, flush=True)
