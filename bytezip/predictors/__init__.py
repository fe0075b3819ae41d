"""The mixer's inputs, declared in one place: the wiring of every model into `bytezip.mixing.Mixer`.

Each entry is an `Input` (name, kind, starting weight, what it needs); the mixer's weight arrays, the C
kernel's descriptor table and every count and offset follow from this tuple's order. A new model is its own
file here (a `Predictor` for an `EXTERNAL` input, or a kind the C mixer computes in its own csrc/ file) and
one line below. Changing this tuple changes what the coder writes: that is a new format version
(`bytezip.format`), and tests/test_golden.py's recorded archives say so.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .base import ONE, Input, Kind, Predictor
from .context import ABOVE, FIELDS, RECORD, SKIP_2_3
from .image import CarriedImageModel, ImageModel, WeightedImageModel
from .pcm import CascadePcmModel, PcmModel

_CONTEXT = ONE >> 6           # the starting weight of each match and context model

INPUTS: tuple[Input, ...] = (
    Input("neural", Kind.NEURAL, ONE - 14 * _CONTEXT),
    Input("chunk match", Kind.MATCH, _CONTEXT, arg=0),
    Input("history match", Kind.MATCH, _CONTEXT, arg=1, needs="history"),
    Input("chunk order 1", Kind.CHUNK_ORDER, _CONTEXT, arg=0, order=1),
    Input("chunk order 2", Kind.CHUNK_ORDER, _CONTEXT, arg=1, order=2),
    Input("chunk order 3", Kind.CHUNK_ORDER, _CONTEXT, arg=2, order=3),
    Input("chunk skip 2-3", Kind.CHUNK_ORDER, _CONTEXT, arg=3, order=SKIP_2_3, needs="no signal"),
    Input("chunk fields", Kind.CHUNK_ORDER, _CONTEXT, arg=4, order=FIELDS, needs="no signal"),
    Input("chunk above", Kind.CHUNK_ORDER, _CONTEXT, arg=5, order=ABOVE, needs="no signal"),
    Input("chunk record", Kind.CHUNK_ORDER, _CONTEXT, arg=6, order=RECORD, needs="no signal"),
    Input("history order 1", Kind.HISTORY_ORDER, _CONTEXT, arg=0, order=1, needs="history or dictionary"),
    Input("history order 2", Kind.HISTORY_ORDER, _CONTEXT, arg=1, order=2, needs="history or dictionary"),
    Input("history order 3", Kind.HISTORY_ORDER, _CONTEXT, arg=2, order=3, needs="history or dictionary"),
    Input("history order 4", Kind.HISTORY_ORDER, _CONTEXT, arg=3, order=4, needs="history or dictionary"),
    Input("history order 6", Kind.HISTORY_ORDER, _CONTEXT, arg=4, order=6, needs="history or dictionary"),
    Input("audio", Kind.EXTERNAL, ONE, arg=0, predictor=CascadePcmModel),
    Input("image", Kind.EXTERNAL, ONE, arg=1, predictor=WeightedImageModel),
    Input("dictionary match", Kind.MATCH, _CONTEXT, arg=2, needs="dictionary text"),
)



def _without(inputs: tuple[Input, ...], names: tuple[str, ...], contexts: int) -> tuple[Input, ...]:
    """`inputs` less the named ones, the neural input starting with the weight the others leave it."""
    return tuple(dataclasses.replace(i, weight=ONE - contexts * _CONTEXT) if i.kind == Kind.NEURAL else i
                 for i in inputs if i.name not in names)


# Format 11 added the chunk's skip, field and above contexts, format 12 its record context, format 13 the audio
# predictor's second stage and warm start and the pixel predictor's carried tables, format 14 the weighted pixel
# predictor; archives of formats 8-13 decode with the inputs they were made with (and a version-1 user
# dictionary's start weights follow format 10's)
def _with(inputs: tuple[Input, ...], predictors: dict[str, type]) -> tuple[Input, ...]:
    """`inputs` with these external inputs' predictor classes, by name."""
    return tuple(dataclasses.replace(i, predictor=predictors.get(i.name, i.predictor)) for i in inputs)


INPUTS_V13 = _with(INPUTS, {"image": CarriedImageModel})
INPUTS_V12 = _with(INPUTS, {"audio": PcmModel, "image": ImageModel})
NEW_IN_12 = ("chunk record",)
NEW_IN_11 = ("chunk skip 2-3", "chunk fields", "chunk above")
INPUTS_V11 = _without(INPUTS_V12, NEW_IN_12, 13)
INPUTS_V10 = _without(INPUTS_V12, NEW_IN_12 + NEW_IN_11, 10)

# the linear mix keeps a weight set per (weight group, match bucket); a predictor picks its bytes' group
WEIGHT_GROUPS = ("other", "audio low byte", "audio high byte", "image")


def check(inputs: tuple[Input, ...]) -> None:
    """Refuse a declaration the mixer cannot run: names unique, one neural input first, each kind's args
    0, 1, 2 ... in order (the context models blend each order on the one before it)."""
    names = [i.name for i in inputs]
    if len(set(names)) != len(names):
        raise ValueError(f"mixer inputs named twice: {names}")
    if not inputs or inputs[0].kind != Kind.NEURAL or sum(i.kind == Kind.NEURAL for i in inputs) != 1:
        raise ValueError("the mixer needs exactly one neural input, first")
    for kind in Kind:
        args = [i.arg for i in inputs if i.kind == kind]
        if args != list(range(len(args))):
            raise ValueError(f"{kind.name} inputs must have args 0..{len(args) - 1} in order, not {args}")
    for kind in (Kind.CHUNK_ORDER, Kind.HISTORY_ORDER):
        orders = [i.order for i in inputs if i.kind == kind]
        if orders != sorted(set(orders)) or (orders and orders[0] < 1):
            raise ValueError(f"{kind.name} orders must rise from 1 or more: {orders}")
    if any(i.kind == Kind.EXTERNAL and i.predictor is None for i in inputs):
        raise ValueError("an external input needs its predictor class")


def of_kind(inputs: tuple[Input, ...], kind: Kind) -> tuple[Input, ...]:
    return tuple(i for i in inputs if i.kind == kind)


def inputs_for(version: int) -> tuple[Input, ...]:
    """The mixer's inputs in an archive of this format version: each decodes with the mixer it was made with."""
    if version >= 14:
        return INPUTS
    return {13: INPUTS_V13, 12: INPUTS_V12, 11: INPUTS_V11}.get(version, INPUTS_V10)


def carry_over(weights: np.ndarray, source: tuple[Input, ...], target: tuple[Input, ...]) -> np.ndarray:
    """Geometric weights [..., len(source)] for the inputs `target`, by name: an input the source lacks starts as
    in a fresh mixer (the neural input at ONE, the others at 0)."""
    at = {i.name: k for k, i in enumerate(source)}
    out = np.zeros(weights.shape[:-1] + (len(target),), dtype=np.int64)
    for k, i in enumerate(target):
        out[..., k] = weights[..., at[i.name]] if i.name in at else (ONE if i.kind == Kind.NEURAL else 0)
    return out


check(INPUTS)
check(INPUTS_V13)
check(INPUTS_V12)
check(INPUTS_V11)
check(INPUTS_V10)
__all__ = ["INPUTS", "INPUTS_V10", "INPUTS_V11", "INPUTS_V12", "INPUTS_V13", "WEIGHT_GROUPS", "carry_over", "inputs_for",
           "Input", "Kind", "Predictor", "CarriedImageModel", "CascadePcmModel", "ImageModel", "PcmModel",
           "WeightedImageModel", "check", "of_kind"]
