"""What a mixer input is: one declaration per input (`Input`), and the interface of the predictors that run
outside the mixer's kernel (`Predictor`).

The mixer (`bytezip.mixing.Mixer`, its C twin in csrc/mixer.c) loops over a tuple of `Input`s in order
(`bytezip.predictors.INPUTS`): its weight arrays, its C descriptor table and the per-kind code all follow from
that tuple, so adding an input is a new declaration there, never a renumbering. The kinds the kernel computes
itself (neural, match, context orders) are cheap per byte and share state across lanes; anything else is
`EXTERNAL`: a `Predictor` that hands the mixer a distribution per lane each step and learns from the coded
byte, as the audio and image predictors do.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

import numpy as np

ONE = 1 << 16                 # every input's distribution sums to about ONE


class Kind(enum.IntEnum):
    """How the mixer obtains an input (the numbers are the C enum's, csrc/mixer.h, checked at load)."""
    NEURAL = 0                # the MEGABYTE distribution (exactly one, first: the context models blend on it)
    MATCH = 1                 # a match model; arg: 0 over the lane's chunk, 1 the shared history, 2 the dictionary
    CHUNK_ORDER = 2           # a context model over the lane's chunk; arg: its index, order: its order (or above
                              # every order: a context not of the last k bytes, `context.SKIP_2_3`, `FIELDS`,
                              # `ABOVE`)
    HISTORY_ORDER = 3         # a context model over the shared history; arg: its index, order: its order
    EXTERNAL = 4              # a `Predictor`'s distribution; arg: its index among the external inputs


@dataclass(frozen=True)
class Input:
    """One input of the mixer."""
    name: str                 # unique: code, tests and reports refer to inputs by name
    kind: Kind
    weight: int               # its starting linear weight (ONE = 1.0 before the used inputs are renormalised)
    arg: int = 0              # which one of its kind (see `Kind`)
    order: int = 0            # context models: the number of bytes of context
    needs: str = ""           # what it reads, without which it is off (no weight, no floor): "history" (the
                              # shared history holds bytes), "history or dictionary", "dictionary text" (a
                              # priming dictionary and no signal predictor), "no signal" (no audio or image
                              # predictor in these lanes: their bytes are samples or pixels); "" = always on
    predictor: type | None = None   # EXTERNAL: the `Predictor` class whose instance computes it


class Predictor(Protocol):
    """A model outside the kernel (audio, image, or a new one), for the lanes of one mixer, each step."""

    geometric: bool           # False: bytes it predicts keep the linear mix alone (no geometric stage)

    def mixer_input(self, mixer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(active [L] bool, distribution [L, 256] int64 summing to about ONE, weight group [L]) for each lane's
        byte at `mixer.t` (`mixer.hist` [L, >= t]: the lanes' bytes so far; `mixer.history`: earlier rounds').
        The weight group (an index into `predictors.WEIGHT_GROUPS`) picks the lane's linear weight set."""

    def learn(self, mixer, byte: np.ndarray) -> None:
        """After each lane's byte [L] at `mixer.t` is coded (before the mixer advances)."""
