"""Cost in bits of the PCM predictor alone over held-out WAVs: lanes = 4 KiB chunks, cold or warm (the
chunk before it fed first, uncounted)."""
import sys, os, glob, importlib, numpy as np
sys.path.insert(0, '/work/main')
from bytezip.pcm import detect_layout
C = 4096

def lanes_for(path, warm):
    data = open(path, 'rb').read()
    lay = detect_layout(data[:4096])
    out = []
    for s in range(0, len(data), C):
        W = int(__import__('os').environ.get('WARM_CHUNKS', '1')); G = int(__import__('os').environ.get('GAP', '0'))
        hi = s - C * G
        a = max(lay.offset, hi - C * W) if warm and hi > lay.offset else s
        a = a - (a - lay.offset) % lay.frame if a < s else s
        warmb = data[a:hi] if a < s else b''
        out.append((warmb + data[s:s + C], s - len(warmb), len(warmb)))
    return lay, out, len(data)

def cost(model_cls, path, warm):
    lay, lanes, n = lanes_for(path, warm)
    W = max(len(d) for d, _, _ in lanes)
    L = len(lanes)
    arr = np.zeros((L, W), dtype=np.int64)
    for i, (d, _, _) in enumerate(lanes):
        arr[i, :len(d)] = np.frombuffer(d, np.uint8)
    starts = np.array([a for _, a, _ in lanes])
    skip = np.array([k for _, _, k in lanes]); size = np.array([len(d) for d, _, _ in lanes])
    m = model_cls(lay, starts)
    bits = 0.0; flat = 0.0
    prev = np.zeros(L, dtype=np.int64)
    for t in range(W):
        active, high, p = m.frequencies(t, prev)
        x = arr[:, t]
        counted = (t >= skip) & (t < size)
        pp = (p[np.arange(L), x] + 1) / (p.sum(1) + 256)
        b = np.where(active, -np.log2(pp), 8.0)
        bits += b[counted].sum()
        m.update(t, x, prev)
        prev = x
    return bits / 8, n

if __name__ == '__main__':
    mod = importlib.import_module(sys.argv[1]) if len(sys.argv) > 1 else importlib.import_module('bytezip.predictors.pcm')
    files = sorted(glob.glob('/tmp/aud/*.wav'))
    tot = {}
    for warm in [w == '1' for w in __import__('os').environ.get('MODES', '01')]:
        T = N = 0
        for f in files:
            b, n = cost(mod.PcmModel, f, warm); T += b; N += n
            if len(sys.argv) > 2: print(os.path.basename(f), warm, f"{8*b/n:.3f}")
        tot[warm] = 8 * T / N
    print({('warm' if k else 'cold'): round(v, 4) for k, v in tot.items()})
