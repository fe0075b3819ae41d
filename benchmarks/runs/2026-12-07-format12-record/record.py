"""Record, for each chunk the mixer codes, its bytes and the mixed probability of each actual byte."""
import sys, pickle, numpy as np
import bytezip, bytezip.neural as nm
recs = []
orig = nm.mix_round
def wrapped(freqs, chunks, *a, **k):
    out, mixer = orig(freqs, chunks, *a, **k)
    for c, f in zip(chunks, out):
        x = np.frombuffer(c, dtype=np.uint8)
        f = f[:len(x)].astype(np.float64)
        recs.append((bytes(c), f[np.arange(len(x)), x] / f.sum(-1)))
    return out, mixer
nm.mix_round = wrapped
src, dst = sys.argv[1], sys.argv[2]
limit = int(sys.argv[3]) if len(sys.argv) > 3 else 1 << 30
data = open(src, 'rb').read()[:limit]
blob = bytezip.compress(data, solid=False)
np.savez(dst, *[np.frombuffer(c, np.uint8) for c, _ in recs], *[p for _, p in recs])
print(src, len(data), len(blob), "model bits", sum(-np.log2(p).sum() for _, p in recs) / 8, "chunks", len(recs))
