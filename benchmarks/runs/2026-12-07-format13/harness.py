"""Cost in bits of a PCM predictor alone over the held-out WAVs in /tmp/aud (see README.md): lanes = 4 KiB
chunks, each cold, or warm (the WARM_CHUNKS chunks before it, GAP chunks further back, fed first, uncounted).

    MODES=01 WARM_CHUNKS=1 S2=16 PICK=1 python harness.py pcm3              # a variant (pcm3.py, pcm4.py)
    MODES=1 WARM_CHUNKS=2 python harness.py bytezip.predictors.pcm:CascadePcmModel   # format 13's, in C

MODES: a digit per pass, 0 cold, 1 warm; a third argument prints every file."""
import glob
import importlib
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))      # the repository
from bytezip.pcm import detect_layout  # noqa: E402

C = 4096
WARM_CHUNKS = int(os.environ.get("WARM_CHUNKS", "1"))
GAP = int(os.environ.get("GAP", "0"))


def lanes_for(path, warm):
    """(layout, [(lane bytes, lane start in the input, bytes not counted)], input size)."""
    data = open(path, "rb").read()
    lay = detect_layout(data[:4096])
    out = []
    for s in range(0, len(data), C):
        hi = s - C * GAP
        a = max(lay.offset, hi - C * WARM_CHUNKS) if warm and hi > lay.offset else s
        a = a - (a - lay.offset) % lay.frame if a < s else s
        warm_bytes = data[a:hi] if a < s else b""
        out.append((warm_bytes + data[s:s + C], s - len(warm_bytes), len(warm_bytes)))
    return lay, out, len(data)


def cost(model_cls, path, warm):
    """Bytes of information (-log2 p / 8) of the file's counted bytes under the predictor, and the file's size."""
    lay, lanes, n = lanes_for(path, warm)
    W, L = max(len(d) for d, _, _ in lanes), len(lanes)
    arr = np.zeros((L, W), dtype=np.int64)
    for i, (d, _, _) in enumerate(lanes):
        arr[i, :len(d)] = np.frombuffer(d, np.uint8)
    starts = np.array([a for _, a, _ in lanes])
    skip, size = np.array([k for _, _, k in lanes]), np.array([len(d) for d, _, _ in lanes])
    m = model_cls(lay, starts)
    bits, prev = 0.0, np.zeros(L, dtype=np.int64)
    for t in range(W):
        active, high, p = m.frequencies(t, prev)
        x = arr[:, t]
        counted = (t >= skip) & (t < size)
        pp = (p[np.arange(L), x] + 1) / (p.sum(1) + 256)
        bits += np.where(active, -np.log2(pp), 8.0)[counted].sum()
        m.update(t, x, prev)
        prev = x
    return bits / 8, n


if __name__ == "__main__":
    module, _, name = (sys.argv[1] if len(sys.argv) > 1 else "bytezip.predictors.pcm").partition(":")
    model_cls = getattr(importlib.import_module(module), name or "PcmModel")
    files = sorted(glob.glob("/tmp/aud/*.wav"))
    totals = {}
    for warm in [mode == "1" for mode in os.environ.get("MODES", "01")]:
        T = N = 0
        for f in files:
            b, n = cost(model_cls, f, warm)
            T, N = T + b, N + n
            if len(sys.argv) > 2:
                print(os.path.basename(f), warm, f"{8 * b / n:.3f}")
        totals["warm" if warm else "cold"] = round(8 * T / N, 4)
    print(totals)
