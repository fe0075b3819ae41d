"""Offline: each candidate context (counts per 4 KiB chunk, 1024 hashed rows, PPM-blended on the recorded mixed
probability) mixed with the recorded mix by Bayesian linear weights; bytes saved per file."""
import sys, numpy as np, math
ONE = 1 << 16
MUL, MASK = 0x2F0B3, 0xFFFFFF

def rec_len_stream(x):
    """paq8-style record length, per position (before coding x[t]), 0 = none."""
    n = len(x); out = np.zeros(n, np.int64)
    cpos = [[-1]*4 for _ in range(256)]
    rlen = rlen1 = rlen2 = 0; rc1 = rc2 = 0
    for t in range(n):
        out[t] = rlen
        c = x[t]; p = cpos[c]
        r = t - p[0]
        if p[3] >= 0 and r > 1 and r == p[0]-p[1] == p[1]-p[2] == p[2]-p[3]:
            if r == rlen1: rc1 += 1
            elif r == rlen2: rc2 += 1
            elif rc1 > rc2: rlen2, rc2 = r, 1
            else: rlen1, rc1 = r, 1
        if rc1 > 15 and rlen != rlen1: rlen, rc1, rc2 = rlen1, 0, 0
        if rc2 > 15 and rlen != rlen2: rlen, rc1, rc2 = rlen2, 0, 0
        p[3], p[2], p[1], p[0] = p[2], p[1], p[0], t
    return out

def ctx_keys(x, name, rl):
    n = len(x)
    def b(j, t): return int(x[t-j]) if t >= j else 0
    keys = []
    for t in range(n):
        r = rl[t]
        if name == "rec_above_left": k = (b(r, t) if r else 256, b(1, t), r > 0)
        elif name == "rec_above_above2": k = (b(r, t) if r else 256, b(2*r, t) if r else 256)
        elif name == "rec_off": k = (b(r, t), b(2*r, t)) if r else None
        elif name == "rec_col_above": k = ((t % r) if r else 999, b(r, t) if r else 256)
        elif name == "rec_above_only": k = (b(r, t) if r else 256,)
        elif name == "b4": k = (b(4, t),)
        elif name == "b8": k = (b(8, t),)
        elif name == "b8_b1": k = (b(8, t), b(1, t))
        elif name == "b4_b1": k = (b(4, t), b(1, t))
        elif name == "b4_b8": k = (b(4, t), b(8, t))
        elif name == "b8_b16": k = (b(8, t), b(16, t))
        elif name == "b1_b3": k = (b(1,t), b(3,t))
        elif name == "b2_b4": k = (b(2,t), b(4,t))
        elif name == "o2": k = (b(1,t), b(2,t))
        elif name == "pos4_b4": k = (t % 4, b(4, t))
        elif name == "pos8_b8": k = (t % 8, b(8, t))
        else: raise KeyError(name)
        if k is None:
            keys.append(None); continue
        h = 0
        for v in k: h = (h * MUL + int(v) + 1) & MASK
        keys.append((h ^ (h >> 10)) & 1023)
    return keys

def simulate(x, p, names, rl):
    """Cost in bits of the recorded p alone and with the named contexts mixed in."""
    n = len(x)
    keyss = [ctx_keys(x, nm, rl) for nm in names]
    tables = [dict() for _ in names]
    m = 1 + len(names)
    w = np.full(m, 1.0 / m); w[0] = 1 - 0.05 * (m - 1); w[1:] = 0.05
    bits = 0.0
    for t in range(n):
        xt = int(x[t]); ps = [p[t]]
        for tab, keys in zip(tables, keyss):
            row = tab.get(keys[t]) if keys[t] is not None else None
            if row is None:
                ps.append(p[t])
            else:
                s = sum(row.values()); esc = max(len(row), 1)
                ps.append((row.get(xt, 0) + esc * p[t]) / (s + esc))
        ps = np.array(ps)
        mix = float(w @ ps)
        bits -= math.log2(mix)
        w = w + (w * ps / mix - w) / 8
        w = np.maximum(w, 1 / 256); w /= w.sum()
        for tab, keys in zip(tables, keyss):
            if keys[t] is None: continue
            row = tab.setdefault(keys[t], {})
            row[xt] = row.get(xt, 0) + 1
    return bits

files = sys.argv[1].split(",")
cands = [c.split("+") for c in sys.argv[2].split(",")]
for f in files:
    z = np.load(f)
    k = len(z.files) // 2
    chunks = [(z[f"arr_{i}"], z[f"arr_{i+k}"]) for i in range(k)]
    base = sum(-np.log2(p).sum() for _, p in chunks) / 8
    line = [f"{f.split('/')[-1]:14s} {base:9.0f}"]
    rls = [rec_len_stream(x) for x, _ in chunks]
    for names in cands:
        tot = sum(simulate(x, p, names, rl) for (x, p), rl in zip(chunks, rls)) / 8
        line.append(f"{'+'.join(names)} {100*(tot/base-1):+.1f}%")
    print("  ".join(line), flush=True)
