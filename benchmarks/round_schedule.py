"""Should rounds grow? Compare the codec's round schedule (about 8 rounds of R = ceil(chunks / 8) chunks: the
first eighth of an input codes with no shared history) with one that doubles from a single chunk up to R
(rounds of 1, 1, 2, 4, ... R, then R: only the first chunk codes without history, for a few more rounds), or
doubles up to 64 chunks whatever the input's size (fewer rounds for small inputs, more for large ones).

For each file: the shipped model's frequencies once, then the mixer over the chunks in each schedule as the
codec runs it (shared history, weights carried from round to round), and the ideal code length of the best of
mixed and neural per chunk, in bits per byte; and the number of rounds (decode time grows with it). Run on
held-out files only (never bench/). Usage:

    python benchmarks/round_schedule.py --bytes 196608 FILE...
"""
from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

import bytezip
from bytezip.codec import neural_frequencies
from bytezip.mixing import History, mix_round


def bits(freqs: np.ndarray, chunk: bytes) -> float:
    x = np.frombuffer(chunk, dtype=np.uint8)
    return float(-np.log2(freqs[np.arange(len(x)), x] / freqs.sum(-1)).sum())


def fixed(n: int, rounds: int = 8, most: int = 64) -> list[int]:
    """The codec's schedule: rounds of R = ceil(n / rounds) chunks (1 <= R <= most)."""
    r = min(most, max(1, math.ceil(n / rounds)))
    return [min(r, n - a) for a in range(0, n, r)]


def doubling(n: int, rounds: int = 8, most: int = 64) -> list[int]:
    """1, 1, 2, 4, ... up to the codec's R, then R."""
    r, out, size = fixed(n, rounds, most)[0], [], 1
    while sum(out) < n:
        out.append(min(size, r, n - sum(out)))
        if len(out) > 1:
            size *= 2
    return out


def doubling_to_most(n: int, most: int = 64) -> list[int]:
    """1, 2, 4, ... up to `most`, then `most` (no target count of rounds)."""
    out = []
    while sum(out) < n:
        out.append(min(1 << len(out), most, n - sum(out)))
    return out


def code(chunks: list[bytes], nn: list[np.ndarray], schedule: list[int]) -> float:
    history, total, a = History(), 0.0, 0
    for size in schedule:
        part = chunks[a:a + size]
        mixed, mixer = mix_round([f.copy() for f in nn[a:a + size]], part, history)
        costs = [(bits(m, c), bits(f, c)) for m, f, c in zip(mixed, nn[a:a + size], part)]
        total += sum(min(c) for c in costs)
        history.learn_weights([(mixer, np.array([m <= f for m, f in costs]))])
        history.extend(b"".join(part))
        a += size
    return total


def main():
    p = argparse.ArgumentParser()
    p.add_argument("files", nargs="+")
    p.add_argument("--bytes", type=int, default=3 << 16, help="bytes from the start of each file")
    args = p.parse_args()
    cm = bytezip.coding_model(None)
    for path in args.files:
        t = time.time()
        data = open(path, "rb").read()[:args.bytes]
        chunks = [data[i:i + cm.context] for i in range(0, len(data), cm.context)]
        nn = neural_frequencies(cm, chunks)
        row = {"file": path, "bytes": len(data)}
        for name, schedule in (("fixed", fixed(len(chunks))), ("doubling", doubling(len(chunks))),
                                 ("doubling to 64", doubling_to_most(len(chunks)))):
            row[name] = round(code(chunks, nn, schedule) / len(data), 4)
            row[f"{name} rounds"] = len(schedule)
        row["seconds"] = round(time.time() - t)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
