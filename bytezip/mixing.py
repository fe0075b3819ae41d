"""Online mixing of the MEGABYTE distribution with adaptive match and context models (codec "mixed").

A small model with a 4 KB window misses what repeats, inside a chunk and across a file; paq and cmix win
such data by mixing predictors. Here the mixer combines, for every byte:

- the neural distribution;
- a match model over the chunk so far: hash of the last MATCH_MIN bytes -> last position seen -> predicted
  next byte, with a hit rate learned per match-length bucket;
- a match model over the shared history (`History`: every byte of the rounds before this chunk's round),
  hashed on the last HISTORY_MATCH_MIN bytes, and one over the priming dictionary (text only);
- order-1/2/3 context models (byte counts) over the chunk so far, and order-1/2/3/4/6 ones over the history,
  each order blended with the one below it as PPM does (the neural distribution below order 1), with an
  escape weight from the number of distinct bytes seen in the context; with a priming dictionary
  (`bytezip.dictionary`), each history order is blended with the dictionary's same order instead;
- for 16-bit audio (`pcm.PcmLayout` in the archive header), a sample predictor (`predictors.CascadePcmModel`,
  `PcmModel` before format 13); for
  8-bit images (`image.ImageLayout`), a pixel predictor (`predictors.WeightedImageModel`, `ImageModel` and
  `CarriedImageModel` before format 14);

linearly, with weights (one set per match-length bucket, and per kind of byte: audio low/high byte, image
sample, anything else) learned
online from each coded byte by a Bayesian-style multiplicative update. Without an audio layout (or, before
format 14, an image layout), the coded distribution blends that linear mix with two geometric ones (the inputs' log-probabilities weighted
and renormalised, paq's logistic mixing over 256 symbols, weights learned by the gradient of the code
length; one weight set per match bucket, and one per bucket and class of the previous byte): on held-out
training text, code and binaries even the plain mean of one geometric and the linear mix costs 2-7% less
than the linear mix alone (`benchmarks/MIXING.md`); the blend's own weights (per match bucket) are learnt as
the linear mix's are. The geometric weights and the blend of a round's mixed chunks are handed on to the next
round's (`History.learn_weights`), so a 4 KB chunk starts from what the file so far has taught.

Chunks are coded in rounds of `round_chunks` lanes: all lanes of a round read the same frozen history, so a
round decodes as one batch, and the history grows by the whole round once it is done. A file's first round
sees nothing; later ones see all of the file before them (up to HISTORY_MAX bytes).

Which inputs there are, in which order, with which starting weights, is declared once in
`bytezip.predictors.INPUTS`; this module is the wiring, and each model's own code is in its file there (and
its C twin in csrc/).

Everything is integer numpy arithmetic (integer division, shifts), vectorised across lanes, so the encoder and
the decoder compute identical frequencies on every platform. The encoder drives it byte by byte over a round
of chunks; the decoder one step per byte for all lanes, right after the model step.
"""
from __future__ import annotations

import bisect
import ctypes
import functools
import hashlib

import numpy as np

from . import kernels
from . import format as fmt
from .format import BytezipError
from .image import ImageLayout
from .pcm import PcmLayout
from .predictors import (INPUTS, WEIGHT_GROUPS, CarriedImageModel, CascadePcmModel, ImageModel, Input, Kind,
                         PcmModel, Predictor, WeightedImageModel, carry_over, check, of_kind, record)
from .predictors.base import ONE
from .predictors.context import (ABOVE, FIELD_MAX, FIELD_WINDOW, FIELDS, OWN_HASH_BITS, RECORD, SHARED_HASH_BITS,
                                 SINCE_MAX, SKIP_2_3, context_rows, ppm_blend)
from .predictors.match import (HISTORY_MATCH_BITS, HISTORY_MATCH_MIN, HIT_HALVE, MATCH_HASH_BITS, MATCH_MIN,
                               bucket_of, hash_last, match_distribution)

HISTORY_MAX = 1 << 26         # history bytes kept for matching; its context counts keep learning beyond
SPAN_ANCHOR = 32              # a history zstd chunk's span: the chunk's contexts looked up every this many bytes
SPAN_VERIFY = 32              # ... and kept where this many bytes agree
SPAN_CHUNKS = 4               # ... the span at most this many chunk lengths
EXTEND_PIECE = 1 << 18        # the history learns this many bytes at a time (~40 MB of scratch)
SHARED_ORDERS = tuple(i.order for i in of_kind(INPUTS, Kind.HISTORY_ORDER))   # what a History counts
N_MODELS = len(INPUTS)        # the mixer's inputs (`predictors.INPUTS`)
N_BUCKETS = 4                 # weight sets: no match, longest match 0-3, 4-15, 16+ ...
N_SETS = len(WEIGHT_GROUPS) * N_BUCKETS   # ... each for every weight group (other bytes, audio, image)
W_MIN = ONE >> 8              # every predictor keeps a little weight so it can come back
LR_SHIFT = 3                  # weight update rate 1/8 of the Bayesian step
LOG_SCALE = 256               # geometric mixer: log2 of a probability in 1/256-bit steps
EXP_RANGE = 16 * LOG_SCALE    # ... a byte's weight is 2^-(d/256) for d up to 16 bits below the likeliest
GEO_W_MAX = 16 * ONE          # ... its weights (ONE = 1.0) stay within +-16
TABLES_DIGEST = "9c09c7b3d7352891"   # SHA-256 prefix of the geometric mixer's log2 and exp2 tables
Signal = PcmModel | ImageModel


def _byte_classes() -> np.ndarray:
    """Class of each byte value: space and control, lower case, upper case, digit, markup (<>/="&),
    sentence punctuation, other ASCII, non-ASCII."""
    c = np.full(256, 6, dtype=np.int64)
    c[:33], c[128:] = 0, 7
    c[ord("a"):ord("z") + 1], c[ord("A"):ord("Z") + 1], c[ord("0"):ord("9") + 1] = 1, 2, 3
    c[np.frombuffer(b'<>/="&', dtype=np.uint8)] = 4
    c[np.frombuffer(b".,;:!?", dtype=np.uint8)] = 5
    return c


BYTE_CLASS = _byte_classes()
N_GEO = 2                     # geometric mixers: weights per match bucket, and per bucket and previous byte class
GEO_SETS = N_BUCKETS * (1 + int(BYTE_CLASS.max()) + 1)   # the first mixer's sets, then the second's
BLEND_SHIFT = 4               # the coded distribution, a blend of the linear and geometric mixes, learns its
BLEND_MIN = ONE >> 5          # ... weights at 1/16 of the Bayesian step and keeps at least 1/32 of each
kernels.check_constants({"ONE": ONE, "N_BUCKETS": N_BUCKETS, "N_SETS": N_SETS, "N_GEO": N_GEO, "GEO_SETS": GEO_SETS,
                         "N_KINDS": len(Kind), "MATCH_MIN": MATCH_MIN, "MATCH_HASH_BITS": MATCH_HASH_BITS,
                         "HISTORY_MATCH_MIN": HISTORY_MATCH_MIN, "HISTORY_MATCH_BITS": HISTORY_MATCH_BITS,
                         "OWN_HASH_BITS": OWN_HASH_BITS, "SHARED_HASH_BITS": SHARED_HASH_BITS,
                         "HIT_HALVE": HIT_HALVE, "SKIP_2_3": SKIP_2_3, "FIELDS": FIELDS, "ABOVE": ABOVE,
                         "RECORD": RECORD, "FIELD_WINDOW": FIELD_WINDOW, "FIELD_MAX": FIELD_MAX,
                         "SINCE_MAX": SINCE_MAX, "RECORD_STATE": record.STATE, "RECORD_VOTES": record.RECORD_VOTES})


# the predictors the C loops step themselves, by csrc/steps.c's numbers (0: no predictor)
STEP_PREDICTORS = {PcmModel: 1, CascadePcmModel: 1, ImageModel: 2, CarriedImageModel: 2, WeightedImageModel: 2}
kernels.check_constants({"SAMPLES": STEP_PREDICTORS[PcmModel], "PIXELS": STEP_PREDICTORS[ImageModel]})


@functools.cache
def _log_exp_tables() -> tuple[np.ndarray, np.ndarray]:
    """LOG2[p] = round(256 log2 p) for p in 0..ONE (0 as 1) and EXP2[d] = round(ONE 2^(-d/256)); checked
    against their digest, so that a platform whose libm rounds one entry differently refuses to code."""
    p = np.maximum(np.arange(ONE + 1), 1)
    log2 = np.rint(LOG_SCALE * np.log2(p)).astype(np.int64)
    exp2 = np.rint(ONE * np.exp2(-np.arange(EXP_RANGE + 1) / LOG_SCALE)).astype(np.int64)
    got = hashlib.sha256(log2.tobytes() + exp2.tobytes()).hexdigest()[:16]
    if got != TABLES_DIGEST:
        raise BytezipError(f"this platform's log2/exp2 tables differ from bytezip's ({got}): "
                           "it cannot code or decode mixed chunks exactly")
    return log2, exp2


class History:
    """What earlier rounds coded, and the statistics every lane of the next round reads (never writes)."""

    def __init__(self):
        self.data = np.zeros(0, dtype=np.uint8)                       # the bytes so far (up to HISTORY_MAX)
        self._buffer = self.data
        self.size = 0                                                  # bytes seen, including beyond HISTORY_MAX
        self.counts = [np.zeros((256 if k == 1 else 1 << SHARED_HASH_BITS, 256), dtype=np.uint16)
                       for k in SHARED_ORDERS]
        self.match_table = np.full(1 << HISTORY_MATCH_BITS, -1, dtype=np.int64)
        self._tail = np.zeros(0, dtype=np.int64)                       # the last bytes, as context for the next
        self.carried: dict[str, np.ndarray] = {}                       # where the next round's mixers start
        self.carried_inputs = INPUTS                                   # ... the inputs of its geo_weights' columns
        self.carried_signal: dict[int, dict[str, np.ndarray]] = {}     # the last round's pixel predictor tables

    def learn_weights(self, parts: list[tuple["Mixer | None", np.ndarray]]):
        """Carry the mean of the weights that the given lanes (bool [L] for each mixer of a finished round: its
        mixed chunks) ended their chunks with into the next round's mixers, so that each 4 KB chunk does not
        relearn them from scratch; and, by input chunk, the tables their pixel predictors ended with
        (`CarriedImageModel`)."""
        self.carried_signal = {j: state for mixer, lanes in parts if mixer is not None
                               for p in mixer.external if isinstance(p, CarriedImageModel)
                               for j, state in p.final_states(lanes).items()}
        parts = [(mixer, lanes) for mixer, lanes in parts if mixer is not None and mixer.geometric and lanes.any()]
        if parts:
            n = sum(int(lanes.sum()) for _, lanes in parts)
            self.carried = {k: sum(mixer.final[k][lanes].sum(0) for mixer, lanes in parts) // n
                            for k in parts[0][0].final}
            self.carried_inputs = parts[0][0].inputs

    def extend(self, data: bytes):
        """Learn from a finished round's bytes (every chunk of it, whatever its codec), in file order, a piece of
        EXTEND_PIECE bytes at a time: the arithmetic widens each byte to several int64 arrays, and a round's
        size is the archive's to declare."""
        for at in range(0, len(data), EXTEND_PIECE):
            self._extend(data[at:at + EXTEND_PIECE])

    def span_of(self, chunk: bytes) -> tuple[int, int] | None:
        """(start, size) of the history bytes that a chunk repeats, for a history zstd chunk's dictionary (the
        format's codec 5): each SPAN_ANCHOR-th context of the chunk looked up in the match table and kept where
        the SPAN_VERIFY bytes from there agree; the span covers the most of those places that lie within
        SPAN_CHUNKS chunk lengths (zstd's level 19 takes ~0.1 s to load a 1 MiB dictionary, a chunk's mixing
        about as long). None: no such place."""
        n, seen = len(chunk), len(self.data)
        if n < SPAN_VERIFY or seen < SPAN_VERIFY:
            return None
        c = np.frombuffer(chunk, dtype=np.uint8).astype(np.int64)
        at = np.arange(HISTORY_MATCH_MIN, n - SPAN_VERIFY + 1, SPAN_ANCHOR)     # a context ends before each
        p = self.match_table[hash_last(lambda j: c[at - j], HISTORY_MATCH_MIN, HISTORY_MATCH_BITS)]
        ok = (p >= HISTORY_MATCH_MIN) & (p + SPAN_VERIFY <= seen)
        starts = [int(q - a) for q, a in zip(p[ok], at[ok])
                  if self.data[q - HISTORY_MATCH_MIN:q + SPAN_VERIFY].tobytes() == chunk[a - HISTORY_MATCH_MIN:
                                                                                       a + SPAN_VERIFY]]
        if not starts:
            return None
        starts.sort()
        reach = min(SPAN_CHUNKS * n, fmt.MAX_HISTORY_PREFIX) - n
        ends = [bisect.bisect_right(starts, a + reach) for a in starts]
        first = max(range(len(starts)), key=lambda i: ends[i] - i)        # the densest window, the earliest of ties
        lo = max(0, starts[first])
        return lo, min(seen, starts[ends[first] - 1] + n) - lo

    def _extend(self, data: bytes):
        new = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
        ctx = max(max(SHARED_ORDERS), HISTORY_MATCH_MIN)
        full = np.concatenate([self._tail, new])
        pos = np.arange(len(self._tail), len(full))                   # positions of the new bytes in `full`

        def prev(j):
            return np.where(pos - j >= 0, full[np.maximum(pos - j, 0)], 0)

        for table, rows in zip(self.counts, context_rows(prev, SHARED_ORDERS, SHARED_HASH_BITS)):
            idx, n = np.unique(rows * 256 + new, return_counts=True)
            flat = table.reshape(-1)
            flat[idx] = np.minimum(flat[idx].astype(np.int64) + n, 0xFFFF)
        if self.size < HISTORY_MAX:
            base = self.size - len(self._tail)                         # history position of full[0]
            keep = min(len(new), HISTORY_MAX - self.size)
            self._append(new[:keep].astype(np.uint8))
            # a context ending at p (p = index of the byte after it) points at p; later positions win
            p = pos[:keep][pos[:keep] + base >= HISTORY_MATCH_MIN]
            h = hash_last(lambda j: full[p - j], HISTORY_MATCH_MIN, HISTORY_MATCH_BITS)
            last = len(h) - 1 - np.unique(h[::-1], return_index=True)[1]
            self.match_table[h[last]] = p[last] + base
        self.size += len(new)
        self._tail = full[-ctx:]

    def _append(self, new: np.ndarray):
        """`data` grows into a buffer of doubling capacity (appending a piece at a time stays linear)."""
        n = len(self.data)
        if n + len(new) > len(self._buffer):
            grown = np.empty(min(HISTORY_MAX, max(2 * len(self._buffer), n + len(new))), dtype=np.uint8)
            grown[:n] = self.data
            self._buffer = grown
        self._buffer[n:n + len(new)] = new
        self.data = self._buffer[:n + len(new)]


def bayes_update(w: np.ndarray, p_x: np.ndarray, floor: np.ndarray | int, shift: int) -> np.ndarray:
    """A linear mix's weights [L, M] (summing to ONE) after coding a byte that its inputs gave probabilities
    p_x [L, M] (ONE = 1): w_i += w_i (p_i(x) - p(x)) / p(x) >> shift (a damped Bayesian step), each at least
    `floor`, renormalised to ONE."""
    m_x = np.maximum((w * p_x).sum(-1, keepdims=True) >> 16, 1)
    w = np.maximum(w + ((w * (p_x - m_x) // m_x) >> shift), floor)
    return w * ONE // w.sum(-1, keepdims=True)


class Mixer:
    """Mixing state of `lanes` chunks coded in lockstep (position t is the same for every lane)."""

    def __init__(self, sizes: list[int], history: History | None = None,
                 signal: Predictor | tuple[Predictor, ...] | None = None, dictionary: History | None = None,
                 *, inputs: tuple[Input, ...] = INPUTS):
        """`sizes`: each lane's chunk length; `signal`: the predictors of the external inputs for these lanes
        (the audio or image one, `signal_model`), if any; `dictionary`: the priming dictionary's statistics
        (read only), if any; `inputs`: the declaration of the mixer's inputs (`predictors.INPUTS`)."""
        check(inputs)
        L, length = len(sizes), max(sizes)
        self.inputs = inputs
        self.lanes, self.sizes = np.arange(L), np.asarray(sizes, dtype=np.int64)
        self.history = history or History()
        self.dictionary = dictionary
        self.own_orders = tuple(i.order for i in of_kind(inputs, Kind.CHUNK_ORDER))
        shared_orders = tuple(i.order for i in of_kind(inputs, Kind.HISTORY_ORDER))
        if shared_orders != SHARED_ORDERS:
            raise ValueError(f"history context orders {shared_orders} are not the History's {SHARED_ORDERS}")
        present = signal if isinstance(signal, tuple) else (signal,) if signal is not None else ()
        # each external input's predictor here (None: not for these lanes)
        self.external = [next((p for p in present if isinstance(p, i.predictor)), None)
                         for i in of_kind(inputs, Kind.EXTERNAL)]
        self.n_match = len(of_kind(inputs, Kind.MATCH))
        self.hist = np.zeros((L, length + 1), dtype=np.int64)
        self.t = 0
        self.match_table = np.full((L, 1 << MATCH_HASH_BITS), -1, dtype=np.int64)
        self.ptr = np.full((self.n_match, L), -1, dtype=np.int64)  # predicted byte's position: chunk, history, dict
        self.len = np.zeros((self.n_match, L), dtype=np.int64)
        self.hits = np.ones((self.n_match, L, N_BUCKETS), dtype=np.int64)   # each match model's hit rate per bucket
        self.tries = np.full((self.n_match, L, N_BUCKETS), 2, dtype=np.int64)
        self.counts = [np.zeros((L, 256 if k == 1 else 1 << OWN_HASH_BITS, 256), dtype=np.int16)
                       for k in self.own_orders]                          # counts < 2^15: chunks <= 32 KB
        self.record = record.fresh_state(L) if RECORD in self.own_orders else None   # what finds RECORD's length
        # audio bytes (and the image bytes of formats 8-13) keep the linear mix alone
        self.geometric = all(p.geometric for p in present)
        # what the second and third match models read; the dictionary is text, so not for audio or image bytes
        self.sources = (self.history, None if self.signalled else dictionary)
        used = np.array([self._on(i) for i in inputs])
        self.floor = np.where(used, W_MIN, 0)
        w = np.where(used, [i.weight for i in inputs], 0)
        self.weights = np.tile(w * ONE // w.sum(), (L, N_SETS, 1))
        # the geometric mixes start as the neural distribution and the blend as an even one, or all where the
        # last round's mixers ended
        self.geo_weights = np.zeros((L, GEO_SETS, len(inputs)), dtype=np.int64)
        self.geo_weights[:, :, 0] = ONE
        self.blend = np.full((L, N_BUCKETS, 1 + N_GEO), ONE // (1 + N_GEO), dtype=np.int64)
        for name, start in self.history.carried.items():
            if name == "geo_weights" and self.history.carried_inputs != inputs:   # a version-1 user dictionary's
                start = carry_over(start, self.history.carried_inputs, inputs)
            getattr(self, name)[:] = start
        self.final = {"geo_weights": self.geo_weights.copy(), "blend": self.blend.copy()}  # at each chunk's end
        self._kernel = self._kernel_state() if kernels.available() else None
        self._flat_inputs = self._flat_pointers = self._row_lists = self._row_tables = None   # built when first needed

    @property
    def signalled(self) -> bool:
        """Whether a sample or pixel predictor runs in these lanes (their bytes are samples or pixels)."""
        return any(p is not None for p in self.external)

    def _on(self, i: Input) -> bool:
        """Whether input i takes part (gets weight) in these lanes: what it reads exists."""
        if i.kind == Kind.EXTERNAL:
            return self.external[i.arg] is not None
        return {"": True, "history": bool(self.history.size),
                "history or dictionary": bool(self.history.size) or self.dictionary is not None,
                "dictionary text": self.sources[1] is not None,
                "no signal": not self.signalled}[i.needs]

    def _kernel_state(self) -> kernels.MixerState:
        """This mixer's arrays, and the scratch that a step's mix leaves for its update, for the C kernel."""
        L, n, ptr = len(self.lanes), len(self.inputs), kernels.pointer
        log2, exp2 = _log_exp_tables() if self.geometric else (None, None)
        # held here: the kernel keeps only their addresses (two threads' first calls of the cached function may
        # each build tables, and only one pair stays cached: the other was freed under a running mixer)
        self._log2_i32 = None if log2 is None else log2.astype(np.int32)      # as the kernel gathers it
        self._exp2 = exp2
        self._spec = np.array([(i.kind, i.arg, i.kind == Kind.EXTERNAL and self.external[i.arg] is None)
                               for i in self.inputs], dtype=np.int64)          # [n, 3]: csrc/mixer.h's Input
        scratch = {"inputs": (L, n, 256), "mixed": (L, 256), "expected": (L, N_GEO, n),
                   "q_sum": (N_GEO, L), "geo": (N_GEO, L, 256), "varies": (L, 1 + n),
                   "bucket": (L,), "wset": (L,), "gset": (N_GEO, L),
                   "has": (self.n_match, L), "predicted": (self.n_match, L), "rows": (len(self.own_orders), L)}
        self._scratch = {k: np.zeros(shape, dtype=np.float64 if k in ("inputs", "expected") else np.int64)
                         for k, shape in scratch.items()}
        self._has, self._predicted = self._scratch["has"], self._scratch["predicted"]   # as mix() leaves them
        orders = lambda o: (ctypes.c_int64 * kernels.MAX_ORDERS)(*o)
        return kernels.MixerState(
            L, self.hist.shape[1], self.t, self.geometric, self.dictionary is not None, n, self.n_match,
            len(self.own_orders), len(SHARED_ORDERS), ptr(self._spec), orders(self.own_orders), orders(SHARED_ORDERS),
            ptr(self.hist), ptr(self.sizes), ptr(self.match_table), ptr(self.ptr), ptr(self.len), ptr(self.hits),
            ptr(self.tries), (ctypes.c_void_p * kernels.MAX_ORDERS)(*map(ptr, self.counts)), ptr(self.record),
            ptr(self.weights),
            ptr(self.floor), ptr(self.geo_weights), ptr(self.blend), ptr(self.final["geo_weights"]),
            ptr(self.final["blend"]), kernels.Source.of(self.sources[0]),
            kernels.Source.of(self.sources[1], with_counts=False), kernels.Source.of(self.dictionary),
            ptr(self._log2_i32), ptr(self._exp2), ptr(BYTE_CLASS), *(ptr(self._scratch[k]) for k in scratch))

    def prev(self, j: int | np.ndarray) -> np.ndarray:
        """Each lane's j-th previous byte [L] (1 = the last one; 0 before the chunk's start); j an int or one per
        lane."""
        if isinstance(j, np.ndarray):
            return np.where(self.t >= j, self.hist[self.lanes, np.clip(self.t - j, 0, None)], 0)
        return self.hist[:, self.t - j] if self.t >= j else np.zeros(len(self.lanes), dtype=np.int64)

    def _external_inputs(self) -> tuple[list[np.ndarray], np.ndarray]:
        """Each external input's distribution [L, 256] (flat where its predictor is absent or inactive) and the
        offset [L] of the weight set the predictors select."""
        if self._flat_inputs is not None:
            return self._flat_inputs                                  # never written to: the same every step
        L = len(self.lanes)
        rows, group = [], np.zeros(L, dtype=np.int64)
        for predictor in self.external:
            p = np.full((L, 256), ONE >> 8, dtype=np.int64)
            if predictor is not None:
                active, dist, g = predictor.mixer_input(self)
                p[active] = dist[active]
                group = np.where(active, g, group)
            rows.append(p)
        inputs = rows, N_BUCKETS * group
        if not self.signalled:
            self._flat_inputs = inputs
        return inputs

    def kernel_steps(self) -> "kernels.MixerSteps | None":
        """What lets the C loops (csrc/steps.c: the decoder's, and `mix_round`'s) mix and learn in steps of their
        own, the sample and pixel predictors' included, or None where a step needs Python: no kernels, or a
        predictor they do not know (one declared in Python alone, `predictors.Predictor`). The arrays behind it
        are this mixer's. Call `resync` after."""
        kinds = [0 if p is None else STEP_PREDICTORS.get(type(p)) for p in self.external]
        if self._kernel is None or None in kinds:
            return None
        L = len(self.lanes)
        if any(kinds):      # rows and offsets the loop writes each step
            rows, offset = [np.zeros((L, 256), dtype=np.int64) for _ in kinds], np.zeros(L, dtype=np.int64)
        else:               # flat: the same every step
            rows, offset = self._external_inputs()
        history = self.history.data if self.history is not None and len(self.history.data) else None
        row_table, kind_array = kernels.pointers(rows), np.array(kinds or [0], dtype=np.int64)
        predictor_table = (ctypes.c_void_p * max(len(kinds), 1))(
            *(None if p is None else ctypes.addressof(p._kernel) for p in self.external))
        scratch = np.zeros((L, 256 + 3), dtype=np.int64)
        self._steps_arrays = rows, offset, row_table, kind_array, predictor_table, scratch   # what the C side reads
        return kernels.MixerSteps(ctypes.addressof(self._kernel), ctypes.addressof(row_table), kernels.pointer(offset),
                                  len(kinds), kernels.pointer(kind_array), ctypes.addressof(predictor_table),
                                  kernels.pointer(history), 0 if history is None else len(history),
                                  kernels.pointer(scratch))

    def resync(self):
        """After steps taken in C (`kernel_steps`): the position the kernel reached."""
        self.t = self._kernel.t

    def mix(self, neural: np.ndarray) -> np.ndarray:
        """Neural frequencies [L, 256] (int64) -> mixed frequencies [L, 256] (int64, each >= 1)."""
        if self._kernel is None:
            return self._mix_numpy(neural)
        into = np.empty((len(self.lanes), 256), dtype=np.int64)
        neural = np.ascontiguousarray(neural, dtype=np.int64)
        external, offset = self._external_inputs()               # held for the call
        pointers = self._flat_pointers
        if pointers is None:
            pointers = kernels.pointers(external), kernels.pointer(offset)
            if self._flat_inputs is not None:                    # the same arrays every step from now on
                self._flat_pointers = pointers
        if kernels.LIB.mixer_mix(ctypes.byref(self._kernel), neural.ctypes.data, *pointers, into.ctypes.data):
            raise MemoryError("the mixer is out of memory")
        return into

    def mix_rows(self, neural: list[np.ndarray], out: list[np.ndarray]):
        """The encoder's step: row t (this position) of each lane's neural frequencies [size, 256] -> row t of
        its `out` [size, 256] (lanes whose chunk has ended are skipped)."""
        if self._kernel is None:
            rows = np.stack([f[self.t] if self.t < len(f) else np.ones(256, dtype=np.int64) for f in neural])
            for o, mixed in zip(out, self.mix(rows)):
                if self.t < len(o):
                    o[self.t] = mixed
            return
        if self._row_lists is None or self._row_lists[0] is not neural:  # the lanes' row tables, once a round
            self._row_lists = (neural, out)
            self._row_tables = [kernels.pointers(a) for a in (neural, out)]
        external, offset = self._external_inputs()
        if kernels.LIB.mixer_mix_rows(ctypes.byref(self._kernel), *self._row_tables, kernels.pointers(external),
                                      kernels.pointer(offset)):
            raise MemoryError("the mixer is out of memory")

    def _mix_numpy(self, neural: np.ndarray) -> np.ndarray:
        L = self.lanes
        p_nn = neural * ONE // neural.sum(-1, keepdims=True)
        has = self.ptr >= 0                                                  # [n_match, L]
        bucket = bucket_of(np.where(has, self.len, -1).max(0))
        predicted = np.stack([self.hist[L, np.maximum(self.ptr[0], 0)]]
                             + [src.data[np.maximum(ptr, 0)] if src is not None and len(src.data)
                                else np.zeros(len(L), np.int64)
                                for src, ptr in zip(self.sources, self.ptr[1:])])
        own_rows = context_rows(self.prev, self.own_orders, OWN_HASH_BITS,
                                None if self.record is None else record.record_length(self.record))
        own = [np.where(row[:, None] >= 0, table[L, np.maximum(row, 0)], 0)           # off (-1): no counts
               for table, row in zip(self.counts, own_rows)]
        chain = sum(k < SKIP_2_3 for k in self.own_orders)                # the rest blend on the neural alone
        shared_rows = context_rows(self.prev, SHARED_ORDERS, SHARED_HASH_BITS)
        external, wset_offset = self._external_inputs()
        wset = bucket + wset_offset
        rows = {Kind.NEURAL: [p_nn],
                Kind.MATCH: [match_distribution(has[m], self.hits[m, L, bucket], self.tries[m, L, bucket],
                                                predicted[m]) for m in range(self.n_match)],
                Kind.CHUNK_ORDER: ppm_blend(p_nn, own[:chain]) + [ppm_blend(p_nn, [c])[0] for c in own[chain:]],
                Kind.HISTORY_ORDER: ppm_blend(p_nn, [table[row] for table, row in zip(self.history.counts,
                                                                                     shared_rows)],
                                              self._priors(p_nn, shared_rows)),
                Kind.EXTERNAL: external}
        inputs = np.stack([rows[i.kind][i.arg] for i in self.inputs], 1)     # [L, n, 256]
        mixed = np.einsum("lm,lmk->lk", self.weights[L, wset], inputs) >> 16  # [L, 256]
        # what update() learns from: the same predictions, not recomputed
        self._inputs, self._bucket, self._wset, self._mixed = inputs, bucket, wset, mixed
        self._has, self._predicted, self._rows = has, predicted, own_rows
        if not self.geometric:
            return mixed + 1
        self._gsets = [bucket, N_BUCKETS * (1 + BYTE_CLASS[self.prev(1)]) + bucket]
        log2, _ = _log_exp_tables()
        self._logp = log2[np.clip(inputs, 1, ONE)]                           # [L, n, 256]
        self._qs = [self._geometric_mix(gs) for gs in self._gsets]
        self._geos = [q * ONE // q.sum(-1, keepdims=True) for q in self._qs]
        b = self.blend[L, bucket]                                             # [L, 1 + N_GEO]
        out = b[:, 0:1] * mixed
        for i, g in enumerate(self._geos):
            out += b[:, i + 1:i + 2] * g
        return (out >> 16) + 1

    def _geometric_mix(self, gset: np.ndarray) -> np.ndarray:
        """q(y) ~ 2^(sum_i w_i log2 p_i(y)) [L, 256], unnormalised."""
        _, exp2 = _log_exp_tables()
        w = self.geo_weights[self.lanes, gset]                               # [L, n]
        z = np.einsum("lm,lmk->lk", w, self._logp)                           # [L, 256], 2^16 x 1/256 bit
        return exp2[np.minimum((z.max(-1, keepdims=True) - z) >> 16, EXP_RANGE)]

    def _priors(self, p_nn: np.ndarray, rows: list[np.ndarray]) -> list[np.ndarray] | None:
        if not self.dictionary:
            return None
        return ppm_blend(p_nn, [table[row] for table, row in zip(self.dictionary.counts, rows)])

    def update(self, byte: np.ndarray):
        """Learn from the byte [L] each lane just coded (after `mix` for this position), then advance."""
        byte = np.ascontiguousarray(byte, dtype=np.int64)
        for predictor in self.external:
            if predictor is not None:
                predictor.learn(self, byte)
        if self._kernel is not None:
            kernels.LIB.mixer_update(ctypes.byref(self._kernel), byte.ctypes.data)
            self.resync()
            return
        L, t, b = self.lanes, self.t, self._bucket
        p_x = self._inputs[L, :, byte]                                       # [L, n]
        self.weights[L, self._wset] = bayes_update(self.weights[L, self._wset], p_x, self.floor, LR_SHIFT)
        if self.geometric:   # w_i += log2 p_i(x) - E_q[log2 p_i] (1/256 bits; a learning rate of ~0.0056 nats)
            for gs, q in zip(self._gsets, self._qs):
                expect = np.einsum("lmk,lk->lm", self._logp, q) // q.sum(-1, keepdims=True)
                g = self.geo_weights[L, gs] + self._logp[L, :, byte] - expect
                self.geo_weights[L, gs] = np.clip(g, -GEO_W_MAX, GEO_W_MAX)
            mixes = np.stack([self._mixed[L, byte]] + [g[L, byte] for g in self._geos], 1)   # [L, 1 + N_GEO]
            self.blend[L, b] = bayes_update(self.blend[L, b], mixes, BLEND_MIN, BLEND_SHIFT)
        # match models: score the predictions, follow or drop the matches
        good = self._has & (self._predicted == byte)
        for m in range(self.n_match):
            self.tries[m, L, b] += self._has[m]
            self.hits[m, L, b] += good[m]
            halve = self.tries[m, L, b] > HIT_HALVE
            self.tries[m, L[halve], b[halve]] >>= 1
            self.hits[m, L[halve], b[halve]] >>= 1
        self.len = np.where(good, self.len + 1, 0)
        self.ptr = np.where(good, self.ptr + 1, -1)
        for src, ptr in zip(self.sources, self.ptr[1:]):                  # ran off the end of what it reads
            if src is not None:
                ptr[ptr >= len(src.data)] = -1
        self.len[self.ptr < 0] = 0
        # context models
        for table, row in zip(self.counts, self._rows):
            table[L[row >= 0], row[row >= 0], byte[row >= 0]] += 1
        if self.record is not None:
            record.learn(self.record, t, byte)
        self.hist[:, t] = byte
        self.t = t + 1
        if self.geometric:                        # what a lane hands on: its weights at its chunk's end
            ended = self.sizes == self.t
            for name, final in self.final.items():
                final[ended] = getattr(self, name)[ended]
        # index the context that ends here; pick up matches where there are none
        if self.t >= MATCH_MIN:
            h = hash_last(self.prev, MATCH_MIN, MATCH_HASH_BITS)
            found = self.match_table[L, h]
            self.ptr[0] = np.where((self.ptr[0] < 0) & (found >= 0), found, self.ptr[0])
            self.match_table[L, h] = self.t
        if self.t >= HISTORY_MATCH_MIN:
            h = None
            for src, ptr in zip(self.sources, self.ptr[1:]):
                if src is None or not len(src.data):
                    continue
                h = hash_last(self.prev, HISTORY_MATCH_MIN, HISTORY_MATCH_BITS) if h is None else h
                found = src.match_table[h]
                ok = (found >= 0) & (ptr < 0)
                for j in range(1, HISTORY_MATCH_MIN + 1):          # a hash collision is no match
                    ok &= src.data[np.maximum(found - j, 0)] == self.prev(j)
                ptr[ok] = found[ok]


def signal_model(layout: PcmLayout | ImageLayout | None, starts: np.ndarray, chunk_size: int,
                 round_chunks: int, *, history: History | None = None, first_record: int = 0,
                 inputs: tuple[Input, ...] = INPUTS) -> Signal | None:
    """The predictor for a round of lanes (lane i's chunk starting at byte starts[i] of the input) of an input
    with this sample or pixel layout, in an archive of `chunk_size` chunks, `round_chunks` per round, as the
    mixer `inputs` declare it (format 13's audio predictor starts from the `history`, which holds the records
    before the round's first, `first_record`)."""
    if isinstance(layout, PcmLayout):
        audio = next(i.predictor for i in of_kind(inputs, Kind.EXTERNAL) if issubclass(i.predictor, PcmModel))
        return audio(layout, np.asarray(starts), history, first_record, chunk_size, round_chunks)
    if isinstance(layout, ImageLayout):
        image = next(i.predictor for i in of_kind(inputs, Kind.EXTERNAL) if issubclass(i.predictor, ImageModel))
        return image(layout, np.asarray(starts), chunk_size, round_chunks,
                     history.carried_signal if history is not None else None)
    return None


def mix_round(neural: list[np.ndarray], chunks: list[bytes], history: History | None = None,
              signal: Signal | None = None, dictionary: History | None = None,
              out: list[np.ndarray] | None = None, *, inputs: tuple[Input, ...] = INPUTS
              ) -> tuple[list[np.ndarray], Mixer]:
    """Encoder side: run the mixer over a round of chunks (as lanes); each chunk's mixed frequencies (written
    into `out` if given, which may be `neural` itself: a step reads its row before writing it), and the mixer
    (whose final weights the round's mixed chunks hand on, `History.learn_weights`)."""
    longest = max(map(len, chunks))
    data = np.zeros((longest, len(chunks)), dtype=np.int64)          # [position, lane]: each step's row contiguous
    for i, c in enumerate(chunks):
        data[:len(c), i] = np.frombuffer(c, dtype=np.uint8)
    in_place = out is neural
    neural = [np.ascontiguousarray(f, dtype=np.int64) for f in neural]
    if in_place:
        out = neural
    elif out is None:
        out = [np.empty_like(f) for f in neural]
    mixer = Mixer([len(c) for c in chunks], history, signal, dictionary, inputs=inputs)
    steps = mixer.kernel_steps()
    if steps is None:
        for t in range(longest):
            mixer.mix_rows(neural, out)
            mixer.update(data[t])
        return out, mixer
    if kernels.LIB.mix_round_steps(ctypes.byref(steps), kernels.pointers(neural), kernels.pointers(out),
                                   data.ctypes.data, longest):
        raise MemoryError("the mixer is out of memory")
    mixer.resync()
    return out, mixer


def mixed_frequencies(neural: list[np.ndarray], chunks: list[bytes], history: History | None = None,
                      signal: Signal | None = None, dictionary: History | None = None) -> list[np.ndarray]:
    """Each chunk's mixed frequencies over a round (`mix_round` without the mixer)."""
    return mix_round(neural, chunks, history, signal, dictionary)[0]
