"""The record length of each lane's chunk so far, the numpy twin of csrc/record.c: what the chunk context
`context.RECORD` reads (the byte one record back and two records back), as paq8's record model finds it.

Tables, spreadsheets, arrays of numbers or structures and bitmaps repeat with a period that no newline marks:
a byte value that recurs at the same distance four times in a row votes for that distance, two candidates
keep counts of their votes, and a candidate becomes the record length once it has RECORD_VOTES more. Nothing
is stored: encoder and decoder find the same length from the bytes coded so far, and a chunk starts with none
(0: the context is off, its input the neural distribution, until a length is found)."""
from __future__ import annotations

import numpy as np

RECORD_VOTES = 16             # votes past which a candidate length becomes the record length
# one lane's state, int64: the last 4 positions of each byte value (newest first, -1: none), then these
LENGTH, FIRST, FIRST_VOTES, SECOND, SECOND_VOTES = range(4 * 256, 4 * 256 + 5)
STATE = 4 * 256 + 5


def fresh_state(lanes: int) -> np.ndarray:
    """The state [lanes, STATE] of chunks with no byte yet (also the C kernel's, `Mixer.record`)."""
    state = np.zeros((lanes, STATE), dtype=np.int64)
    state[:, :4 * 256] = -1
    return state


def record_length(state: np.ndarray) -> np.ndarray:
    """Each lane's record length [L] (0: none yet)."""
    return state[:, LENGTH]


def learn(state: np.ndarray, t: int, byte: np.ndarray):
    """Each lane coded byte [L] at position t of its chunk: vote, and adopt a candidate with enough votes."""
    lanes = np.arange(len(state))
    at = 4 * byte[:, None] + np.arange(4)                               # [L, 4] this byte value's positions
    last = np.take_along_axis(state, at, 1)
    r = t - last[:, 0]
    vote = (last[:, 3] >= 0) & (r > 1) & (r == last[:, 0] - last[:, 1]) & (r == last[:, 1] - last[:, 2]) \
        & (r == last[:, 2] - last[:, 3])
    first = vote & (r == state[:, FIRST])
    second = vote & ~first & (r == state[:, SECOND])
    new = vote & ~first & ~second
    replace_second = new & (state[:, FIRST_VOTES] > state[:, SECOND_VOTES])
    replace_first = new & ~replace_second
    state[:, FIRST_VOTES] += first
    state[:, SECOND_VOTES] += second
    state[replace_second, SECOND], state[replace_second, SECOND_VOTES] = r[replace_second], 1
    state[replace_first, FIRST], state[replace_first, FIRST_VOTES] = r[replace_first], 1
    for candidate, votes in ((FIRST, FIRST_VOTES), (SECOND, SECOND_VOTES)):      # in this order, as paq8
        adopt = (state[:, votes] >= RECORD_VOTES) & (state[:, LENGTH] != state[:, candidate])
        state[adopt, LENGTH] = state[adopt, candidate]
        state[adopt, FIRST_VOTES] = state[adopt, SECOND_VOTES] = 0
    state[lanes[:, None], at] = np.concatenate([np.full((len(state), 1), t), last[:, :3]], 1)
