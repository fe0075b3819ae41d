"""Context models, the numpy twin of csrc/context.c: byte counts per context of order k (the previous byte for
order 1, a hash of the last k bytes above), over the lane's own chunk and over the shared history, each order
blended with the one below it as PPM does (the neural distribution below the first order), with an escape
weight from the number of distinct bytes seen in the context.

Over the lane's own chunk there are also contexts that are not the last k bytes (an `Input.order` of SKIP_2_3,
FIELDS, ABOVE or RECORD, above any order), each blended on the neural distribution alone, as paq8px's sparse and
record models do for what the last bytes do not tell: SKIP_2_3, the second and third bytes back without the last
one (fields of 2-4 bytes in binaries and tables, x86 operands); FIELDS, where the byte is in a delimited line
(the field's index since the last newline, the bytes since the last delimiter) and the previous byte, which
tells a CSV or TSV column, a log's field, a table's cell from the next; ABOVE, the byte in the line above at the
same column and the previous byte (aligned logs, indented JSON and code, fixed-width tables); RECORD, the bytes
one and two records back, where the record length is found from the chunk so far (`record`: arrays of numbers
or structures, database pages, bitmaps), off (the neural distribution itself, nothing counted) until it is."""
from __future__ import annotations

from typing import Callable

import numpy as np

from .base import ONE

OWN_HASH_BITS = 10            # hashed contexts per lane and order, over the chunk
SHARED_HASH_BITS = 16         # hashed contexts per order, over the history (uint16 counts: 32 MB a table)
ESCAPE = 1                    # a context's weight on the order below: ESCAPE x distinct bytes seen, vs its count
MUL, MASK = 0x2F0B3, 0xFFFFFF  # the rolling hash of contexts (and of the match models' keys)


SKIP_2_3 = 65                 # an own context of bytes 2 and 3 back (an `Input.order`, above every order)
FIELDS = 66                   # an own context of the field in a delimited line and the previous byte
ABOVE = 67                    # an own context of the byte in the line above at this column and the previous byte
RECORD = 68                   # an own context of the bytes one and two records back (`record.record_length`)
FIELD_WINDOW = 256            # FIELDS and ABOVE look this many bytes back for the lines and delimiters
FIELD_MAX = 31                # ... and counts fields up to this
SINCE_MAX = 15                # ... and bytes since the last delimiter up to this
DELIMITERS = b",\t;|"


def context_rows(prev: Callable[[int | np.ndarray], np.ndarray], orders: tuple[int, ...], bits: int,
                 record: np.ndarray | None = None) -> list[np.ndarray]:
    """Each context model's row for the next byte: the previous byte (order 1), or a hash of the last k, or of a
    context that is not the last k (`SKIP_2_3`, `FIELDS`, `ABOVE`, `RECORD`: above every order, after them, the
    line scanned once for FIELDS and ABOVE), or -1 where the context is off (RECORD without a record length);
    prev(j) gives the j-th previous byte (1 = the last one, 0 before the start) for every lane or position (j
    an int, or an array of one per lane, for RECORD); `record`: each lane's record length, for RECORD."""
    chain = [k for k in orders if k < SKIP_2_3]
    out, h = [], 0
    for j in range(1, max(chain, default=0) + 1):
        p = prev(j)
        h = (h * MUL + p + 1) & MASK
        if j in chain:
            out.append(p if j == 1 else _hashed_row(h, bits))
    if FIELDS in orders or ABOVE in orders:
        field, since, above = line_position(prev)
    for k in orders[len(chain):]:
        if k == SKIP_2_3:
            keys = [prev(2), prev(3)]
        elif k == ABOVE:
            keys = [above, prev(1)]
        elif k == FIELDS:
            keys = [field, since, prev(1)]
        else:                                                    # RECORD
            keys = [prev(record), prev(2 * record)]
        h = 0
        for key in keys:
            h = (h * MUL + key + 1) & MASK
        out.append(np.where(record > 0, _hashed_row(h, bits), -1) if k == RECORD else _hashed_row(h, bits))
    return out


def _hashed_row(h, bits: int):
    """A context row from the rolling hash of its keys."""
    return (h ^ (h >> bits)) & ((1 << bits) - 1)


def line_position(prev: Callable[[int], np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the next byte is in its line, from the FIELD_WINDOW bytes back: (field, since, above) -- the
    delimiters (`DELIMITERS`) since the last newline, up to FIELD_MAX, plus FIELD_MAX + 1 when no newline is in
    the window; the bytes since the last delimiter or newline, up to SINCE_MAX; the byte in the line above at
    the next byte's column (with the last two newlines j1 < j2 bytes back, the byte j2 - j1 back where that is
    beyond the last newline; else 0)."""
    back = np.stack([prev(j) for j in range(1, FIELD_WINDOW + 1)], -1)   # [..., W]: 1, 2, ... bytes back
    newline = back == 10
    delimiter = np.isin(back, np.frombuffer(DELIMITERS, dtype=np.uint8))
    seen = np.cumsum(newline, -1)                                       # newlines at or nearer than each byte
    field = np.minimum((delimiter & (seen == 0)).sum(-1), FIELD_MAX) + np.where(newline.any(-1), 0, FIELD_MAX + 1)
    stop = newline | delimiter
    since = np.where(stop[..., :SINCE_MAX].any(-1), stop[..., :SINCE_MAX].argmax(-1), SINCE_MAX)
    j1 = (seen < 1).sum(-1) + 1                                         # past the window where there is none
    j2 = (seen < 2).sum(-1) + 1
    d = np.clip(j2 - j1, 1, FIELD_WINDOW)
    above = np.where((j2 <= FIELD_WINDOW) & (d > j1), np.take_along_axis(back, (d - 1)[..., None], -1)[..., 0], 0)
    return field, since, above


def ppm_blend(base: np.ndarray, counts: list[np.ndarray], priors: list[np.ndarray] | None = None
              ) -> list[np.ndarray]:
    """Distributions [L, 256] of context models of rising order from their byte counts [L, 256]: each is its
    counts plus ESCAPE x (distinct bytes seen) times the one below (`base` below the first), normalised;
    an unseen context gives the one below unchanged. With `priors`, order k falls back on priors[k] instead."""
    out, p = [], base
    for k, c in enumerate(counts):
        below = priors[k] if priors else p
        c = c.astype(np.int64)
        escape = ESCAPE * np.maximum((c > 0).sum(-1, keepdims=True), 1)
        p = (c * ONE + escape * below) // (c.sum(-1, keepdims=True) + escape)
        out.append(p)
    return out
