"""The compiled kernels (`_kernels.c`, over csrc/) behind the coding loop, reached through ctypes.

They compute exactly what the torch and numpy code computes (the same integer and IEEE operations), many times
faster; where the extension was not built (no C compiler at install), or with BYTEZIP_KERNELS=0, that code
runs instead.
"""
from __future__ import annotations

import ctypes
import os

import numpy as np

def _load():
    if os.environ.get("BYTEZIP_KERNELS", "1") == "0":
        return None
    try:
        from . import _kernels
    except ImportError:
        return None
    lib = ctypes.CDLL(_kernels.__file__)
    lib.mixer_mix.argtypes = lib.mixer_mix_rows.argtypes = [ctypes.c_void_p] + [ctypes.c_void_p] * 4
    lib.mixer_update.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.mixer_mix.restype = lib.mixer_mix_rows.restype = ctypes.c_int
    lib.mixer_update.restype = None
    lib.local_step.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64] + [ctypes.c_void_p] * 5
    lib.local_step.restype = ctypes.c_int
    lib.global_step.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64] + [ctypes.c_void_p] * 3 + \
        [ctypes.c_int64, ctypes.c_void_p]
    lib.global_step.restype = ctypes.c_int
    lib.image_frequencies.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64,
                                      ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]
    lib.image_update.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.image_frequencies.restype = lib.image_update.restype = None
    lib.pcm_frequencies.argtypes = [ctypes.c_void_p, ctypes.c_int64] + [ctypes.c_void_p] * 4
    lib.pcm_update.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]
    lib.pcm_learn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    lib.pcm_frequencies.restype = lib.pcm_update.restype = None
    lib.pcm_learn.restype = ctypes.c_int
    lib.linear_forward.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]
    lib.head_frequencies.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]
    lib.mlp_forward.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]
    lib.linear_forward.restype = lib.head_frequencies.restype = lib.mlp_forward.restype = ctypes.c_int
    lib.attention_forward.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64] + \
        [ctypes.c_void_p] * 3 + [ctypes.c_int64, ctypes.c_void_p]
    lib.attention_forward.restype = ctypes.c_int
    lib.decoding_start.argtypes, lib.decoding_start.restype = [ctypes.c_void_p], None
    lib.decode_steps.argtypes, lib.decode_steps.restype = [ctypes.c_void_p, ctypes.c_int64], ctypes.c_int
    lib.mix_round_steps.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64]
    lib.mix_round_steps.restype = ctypes.c_int
    lib.detect_cpu.argtypes, lib.detect_cpu.restype = [ctypes.c_int], ctypes.c_int
    lib.kernel_layout.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    lib.kernel_layout.restype = ctypes.c_int
    check_layout(lib, _kernels.__file__)
    lib.detect_cpu(os.environ.get("BYTEZIP_AVX512", "1") != "0")
    return lib


def build_layout(lib) -> dict[str, int]:
    """The constants and structure sizes the loaded C build was compiled with (csrc/layout.c)."""
    names, values = (ctypes.c_char_p * 64)(), (ctypes.c_int64 * 64)()
    n = lib.kernel_layout(names, values, 64)
    return {names[i].decode(): values[i] for i in range(min(n, 64))}


def check_layout(lib, path: str, expected: dict[str, int] | None = None):
    """Refuse a C build whose constants or structures differ from what this Python side passes it (a stale or
    mismatched build would read the wrong fields, silently): a clear error naming the differences. Checks the
    structure sizes and this module's bounds, or, given `expected`, those constants (their Python owners,
    `mixing` and `predictors`, call `check_constants` at import)."""
    got = build_layout(lib)
    want = expected if expected is not None else {
        "MAX_INPUTS": MAX_INPUTS, "MAX_ORDERS": MAX_ORDERS, "MAX_LAYERS": MAX_LAYERS,
        **{f"sizeof {name}": ctypes.sizeof(struct) for name, struct in STRUCTURES.items()}}
    wrong = [f"{k}: C {got.get(k)}, Python {v}" for k, v in want.items() if got.get(k) != v]
    if wrong:
        raise ImportError(f"bytezip's C kernels ({path}) do not match this Python code ({'; '.join(wrong)}): "
                          "rebuild them (pip install .), or run without them (BYTEZIP_KERNELS=0)")


def check_constants(expected: dict[str, int]):
    """`check_layout` for constants owned elsewhere (a no-op without the kernels)."""
    if LIB is not None:
        check_layout(LIB, LIB._name, expected)


MAX_INPUTS, MAX_ORDERS = 32, 8   # the C mixer's bounds (csrc/mixer.h)


def available() -> bool:
    return LIB is not None


def intrinsics(enable: bool = True) -> tuple[str, ...]:
    """Use the CPU's AVX-512 (the mixer's table gathers) and VNNI or else AVX2 (int8 products in the linear
    layers) where it has them, or the compilers' vector code alone: the same results either way (on by default;
    BYTEZIP_AVX512=0 turns them off). Returns those in use."""
    used = LIB.detect_cpu(int(enable))
    return tuple(name for bit, name in ((1, "avx512"), (2, "vnni"), (4, "avx2")) if used & bit)


def pointer(a: np.ndarray | None) -> int | None:
    """Address of a C-contiguous array's data (None for no array), for a kernel that reads or writes it."""
    if a is None:
        return None
    assert a.flags.c_contiguous, "kernels need C-contiguous arrays"
    return a.ctypes.data


def pointers(arrays: list[np.ndarray]) -> ctypes.Array:
    """A C array of the arrays' addresses (rows of a round, external inputs), for a kernel that reads them."""
    return (ctypes.c_void_p * max(len(arrays), 1))(*map(pointer, arrays))


class InputSpec(ctypes.Structure):
    """One mixer input as the kernel reads it (mirrors `Input` in csrc/mixer.h; `predictors.Input` declares it)."""
    _fields_ = [("kind", ctypes.c_int64), ("arg", ctypes.c_int64), ("flat", ctypes.c_int64)]


class Source(ctypes.Structure):
    """A `mixing.History` as the mixer kernel reads it (mirrors `Source` in csrc/mixer.h)."""
    _fields_ = [("data", ctypes.c_void_p), ("n", ctypes.c_int64), ("match_table", ctypes.c_void_p),
                ("counts", ctypes.c_void_p * MAX_ORDERS)]

    @classmethod
    def of(cls, history, with_counts: bool = True) -> "Source":
        if history is None:
            return cls()
        counts = [pointer(c) for c in history.counts] if with_counts else []
        return cls(pointer(history.data), len(history.data), pointer(history.match_table),
                   (ctypes.c_void_p * MAX_ORDERS)(*counts))


class MixerState(ctypes.Structure):
    """Every array of one `mixing.Mixer` (mirrors `Mixer` in csrc/mixer.h; field order matters)."""
    _fields_ = ([(n, ctypes.c_int64) for n in ("L", "width", "t", "geometric", "has_priors", "n_inputs", "n_match",
                                              "n_own", "n_shared")]
                + [("spec", ctypes.c_void_p)]
                + [(n, ctypes.c_int64 * MAX_ORDERS) for n in ("own_orders", "shared_orders")]
                + [(n, ctypes.c_void_p) for n in ("hist", "sizes", "match_table", "ptr", "len", "hits", "tries")]
                + [("counts", ctypes.c_void_p * MAX_ORDERS), ("record", ctypes.c_void_p)]
                + [(n, ctypes.c_void_p) for n in ("weights", "floor", "geo_weights", "blend", "final_geo",
                                                  "final_blend")]
                + [(n, Source) for n in ("history", "dict_match", "priors")]
                + [(n, ctypes.c_void_p) for n in ("log2", "exp2", "byte_class", "inputs", "mixed", "expected",
                                                  "q_sum", "geo", "varies", "bucket", "wset", "gset", "has", "predicted", "rows")])


class Linear(ctypes.Structure):
    """An `exact.ExactLinear` (mirrors `Linear` in csrc/exact.c)."""
    _fields_ = [("wq", ctypes.c_void_p), ("ws", ctypes.c_void_p), ("K", ctypes.c_int64), ("N", ctypes.c_int64),
                ("norm", ctypes.c_int64), ("w8", ctypes.c_void_p), ("w8_sum", ctypes.c_void_p)]


class Block(ctypes.Structure):
    _fields_ = [(n, Linear) for n in ("qkv", "proj", "fc", "out")]


MAX_LAYERS = 8


class Attn(ctypes.Structure):
    """An `exact.ExactAttention`'s shape and softmax table (mirrors `Attn` in csrc/exact.c)."""
    _fields_ = [("n_heads", ctypes.c_int64), ("n_kv", ctypes.c_int64), ("dh", ctypes.c_int64),
                ("att_table", ctypes.c_void_p), ("att_len", ctypes.c_int64), ("score_to_index", ctypes.c_double)]


class Stack(ctypes.Structure):
    """A stack of `exact.ExactBlock` (mirrors `Stack` in csrc/exact.c)."""
    _fields_ = [("d", ctypes.c_int64), ("n_layers", ctypes.c_int64), ("blocks", Block * MAX_LAYERS), ("attn", Attn)]


class LocalModel(ctypes.Structure):
    """The exact local model's weights and tables (mirrors `LocalModel` in csrc/exact.c)."""
    _fields_ = [("stack", Stack), ("P", ctypes.c_int64), ("emb", ctypes.c_void_p), ("pos", ctypes.c_void_p),
                ("head", Linear), ("out_table", ctypes.c_void_p), ("out_len", ctypes.c_int64),
                ("out_steps", ctypes.c_float)]


class GlobalModel(ctypes.Structure):
    """The exact global model's weights (mirrors `GlobalModel` in csrc/exact.c)."""
    _fields_ = [("stack", Stack), ("P", ctypes.c_int64)] + [(n, ctypes.c_void_p) for n in (
        "emb", "start", "pos", "norm")] + [("to_local", Linear)]


class ImageState(ctypes.Structure):
    """A `predictors.ImageModel`'s layout and arrays (mirrors `ImageState` in csrc/image.c)."""
    _fields_ = ([(n, ctypes.c_int64) for n in ("L", "channels", "width", "offset", "band_chunks", "chunk_size",
                                              "round_chunks", "q_max", "weighted")]
                + [(n, ctypes.c_void_p) for n in ("starts", "error", "scale", "bias", "context", "preds", "guess",
                                                  "exp")])


class PcmState(ctypes.Structure):
    """A `predictors.PcmModel`'s layout and arrays (mirrors `PcmState` in csrc/pcm.c)."""
    _fields_ = ([(n, ctypes.c_int64) for n in ("L", "channels", "offset", "q_max", "cascade")]
                + [(n, ctypes.c_void_p) for n in ("starts", "samples", "error", "guess", "scale", "preds", "steps",
                                                  "lms", "lms_input", "residuals", "stage2", "cascade_error",
                                                  "cascaded", "first", "correction", "exp")])


class MixerSteps(ctypes.Structure):
    """What a mixer's steps in C read beyond its state (mirrors `MixerSteps` in csrc/steps.c;
    `mixing.Mixer.kernel_steps` fills it)."""
    _fields_ = ([(n, ctypes.c_void_p) for n in ("mixer", "external", "wset_offset")]
                + [("n_external", ctypes.c_int64)]
                + [(n, ctypes.c_void_p) for n in ("predictor_kind", "predictor", "history")]
                + [("history_n", ctypes.c_int64), ("scratch", ctypes.c_void_p)])


class Decoding(ctypes.Structure):
    """One decoding batch's state (mirrors `Decoding` in csrc/steps.c; `neural._decode_lanes` fills it)."""
    _fields_ = ([(n, ctypes.c_int64) for n in ("B", "P", "t", "whole")]
                + [(n, ctypes.c_void_p) for n in ("global_", "local", "patch", "prev", "g", "gk", "gv", "lk", "lv")]
                + [("g_length", ctypes.c_int64), ("mix", MixerSteps)]
                + [(n, ctypes.c_void_p) for n in ("mixed_lane", "words", "n_words", "next", "lower", "range", "point",
                                                  "lengths", "payload_bits")]
                + [("slack", ctypes.c_double)]
                + [(n, ctypes.c_void_p) for n in ("bits", "out")] + [("width", ctypes.c_int64)]
                + [(n, ctypes.c_void_p) for n in ("freqs", "mixed", "symbols")] + [("failed_lane", ctypes.c_int64)])


# each structure by its name in csrc/ (sizes checked at load)
STRUCTURES = {"Input": InputSpec, "Source": Source, "Mixer": MixerState, "Linear": Linear, "Block": Block,
              "Attn": Attn, "Stack": Stack, "LocalModel": LocalModel, "GlobalModel": GlobalModel,
              "ImageState": ImageState, "PcmState": PcmState, "MixerSteps": MixerSteps,
              "Decoding": Decoding}
LIB = _load()
