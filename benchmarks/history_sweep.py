"""Choose the chunks per round (the lanes of a decode batch) on held-out training data, never on bench/.

For each held-out sample it codes the chunks with the shipped model alone, mixed without shared history, and
mixed with history in rounds of R chunks, and prints bits per byte (the ideal code length of each chunk's
frequencies, which the range coder meets within a few bytes per chunk). Usage:

    python benchmarks/history_sweep.py --bytes 131072 --rounds 1,4,8,16,32
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

import bytezip
from bytezip.codec import neural_frequencies
from bytezip.mixing import History, mixed_frequencies
from bytezip.train import DEFAULT_CORPUS, load_corpus


def bits(freqs: np.ndarray, chunk: bytes) -> float:
    x = np.frombuffer(chunk, dtype=np.uint8)
    return float(-np.log2(freqs[np.arange(len(x)), x] / freqs.sum(-1)).sum())


def sweep(data: bytes, cm, rounds: list[int]) -> dict[str, float]:
    n = cm.context
    chunks = [data[i:i + n] for i in range(0, len(data), n)]
    nn = neural_frequencies(cm, chunks)
    out = {"neural": sum(bits(f, c) for f, c in zip(nn, chunks)) / len(data)}
    mixed = mixed_frequencies(nn, chunks)
    out["mixed"] = sum(min(bits(m, c), bits(f, c)) for m, f, c in zip(mixed, nn, chunks)) / len(data)
    for r in rounds:
        history, total = History(), 0.0
        for a in range(0, len(chunks), r):
            part = chunks[a:a + r]
            mixed = mixed_frequencies(nn[a:a + r], part, history)
            total += sum(min(bits(m, c), bits(f, c)) for m, f, c in zip(mixed, nn[a:a + r], part))
            history.extend(b"".join(part))
        out[f"R={r}"] = total / len(data)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bytes", type=int, default=1 << 17, help="bytes per held-out sample")
    p.add_argument("--rounds", default="1,4,8,16,32")
    p.add_argument("--modalities", default="text,code_docs,binary")
    args = p.parse_args()
    cm = bytezip.coding_model(None)
    _, held, _ = load_corpus(DEFAULT_CORPUS)
    for m in args.modalities.split(","):
        t = time.time()
        res = sweep(held[m].data[:args.bytes].tobytes(), cm, [int(r) for r in args.rounds.split(",")])
        print(json.dumps({"sample": m, "bytes": args.bytes, **{k: round(v, 4) for k, v in res.items()},
                          "seconds": round(time.time() - t)}), flush=True)


if __name__ == "__main__":
    main()
