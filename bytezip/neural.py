"""Neural and mixed chunks: the model's frequencies, the range coder, and the lanes that code chunks in
lockstep, split among worker threads.

Why a module of its own: this is the coding loop, the one part that runs the model step by step (decoding) or
in one parallel forward (encoding), mixes its distributions (`bytezip.mixing`) and drives the range coder,
with its own scheduling (`run_split`: a batch's lanes in parts on as many threads; torch's threads set per
worker, where torch runs at all: with the C kernels built, coding on the CPU never imports it). The facade
(`bytezip.codec`) decides what is coded in which round; this module codes it. Timings,
when asked for (`timings` dicts, filled by `Laps`), are taken here, in the loop itself, for `bytezip.speed`.
A neural chunk is one range-coder stream of its bytes under the exact model's distributions: the encoder gets
them all from one parallel forward; the decoder advances many chunks together as lanes of one batch, one
incremental model step per byte for all lanes.
"""
from __future__ import annotations

import ctypes
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable

import constriction
import numpy as np

from . import format as fmt
from . import kernels
from .format import FormatError
from .loading import CodingModel, cpu_threads, resolve_device, set_threads  # noqa: F401  (set_threads: codec's)
from .mixing import History, Mixer, mix_round
from .predictors import INPUTS, Input
from .options import DEFAULT_LANES

INFO_CAP_BITS = 24           # a byte costs at most this much in the range coder (its precision)
ENCODER_SLACK_BITS = 32      # the encoder keeps model payloads this far inside the format's information limit
FORWARD_BATCH = 16           # chunks per parallel forward on a GPU (memory ~ batch x T^2); on the CPU one at a
                             # time: the C kernels gain nothing from a batch, and one chunk's intermediates stay
                             # in cache (14.6 against 16.9 us a byte for 16 at once, 2-core Xeon, 2026-12-04)
PROGRESS_STEPS = 64          # decoding reports progress every this many steps

_CODER_MODEL = constriction.stream.model.Categorical(perfect=False)


# -- one function per coding step, shared by both directions ------------------------------------------
def probabilities(freqs: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Integer frequencies [..., 256] -> float64 probabilities for the coder (elementwise IEEE, exact), written
    into `out` (of freqs' shape) when given."""
    out = np.empty(freqs.shape) if out is None else out
    np.copyto(out, freqs)
    out /= out.sum(-1, keepdims=True)
    return out


def _words_to_bytes(words: np.ndarray) -> bytes:
    return words.astype("<u4").tobytes().rstrip(b"\0")


def _bytes_to_words(payload: bytes) -> np.ndarray:
    payload += b"\0" * (-len(payload) % 4)
    return np.frombuffer(payload, dtype="<u4").astype(np.uint32)


def neural_frequencies(m: CodingModel, chunks: list[bytes]) -> list[np.ndarray]:
    """Parallel forward over a batch of chunks -> per chunk int64 frequencies [len, 256]."""
    P = m.exact.cfg.patch_size
    width = -(-max(map(len, chunks)) // P) * P
    x = np.zeros((len(chunks), width), dtype=np.int64)
    for i, c in enumerate(chunks):
        x[i, :len(c)] = np.frombuffer(c, dtype=np.uint8)
    out, batch = [], FORWARD_BATCH if m.exact.device.type == "cuda" else 1
    for a in range(0, len(chunks), batch):
        f = as_numpy(m.exact.frequencies(x[a:a + batch]))
        out += [f[i, :len(c)] for i, c in enumerate(chunks[a:a + batch])]
    return out


def information_bits(probs: np.ndarray, symbols: np.ndarray) -> np.ndarray:
    """Bits of each symbol under its row of `probs` [..., 256], at most INFO_CAP_BITS: the least a range coder
    spends on it, so what a model payload of n bytes decodes to sums to at most 8 n + fmt.INFO_SLACK_BITS."""
    p = np.take_along_axis(probs, np.asarray(symbols, dtype=np.int64)[..., None], -1)[..., 0]
    return symbol_bits(p)


def symbol_bits(p: np.ndarray) -> np.ndarray:
    """-log2 of the probabilities p, at most INFO_CAP_BITS (the same as min(-log2 p, cap), with no warning at 0)."""
    return -np.log2(np.maximum(p, 2.0 ** -INFO_CAP_BITS))


_coder_rows = threading.local()   # each encoding thread's float64 rows, reused: fresh memory is slow to fault in


def neural_encode(freqs: np.ndarray, chunk: bytes) -> bytes | None:
    """The range coder's payload for `chunk` under `freqs`, or None when its size in bits is not within the
    format's INFO_SLACK_BITS of the information it decodes to (`information_bits`; a coder's final words can
    end in zeros that are dropped, and rounding is never that far off): the decoder rejects such payloads, so
    another codec must take the chunk."""
    rows = getattr(_coder_rows, "rows", None)
    if rows is None or len(rows) < len(freqs):
        rows = _coder_rows.rows = np.empty((len(freqs), 256))
    symbols = np.frombuffer(chunk, dtype=np.uint8).astype(np.int32)
    probs = probabilities(freqs, rows[:len(freqs)])
    enc = constriction.stream.queue.RangeEncoder()
    enc.encode(symbols, _CODER_MODEL, probs)
    payload = _words_to_bytes(enc.get_compressed())
    if abs(information_bits(probs, symbols).sum() - 8 * len(payload)) > fmt.INFO_SLACK_BITS - ENCODER_SLACK_BITS:
        return None
    return payload


def encode_lanes(m: CodingModel, chunks: list[bytes], mixing: bool, history: History | None = None,
                 signal: object | None = None, dictionary: History | None = None,
                 lap: Callable[[str], None] = lambda part: None
                 ) -> tuple[list[bytes | None], list[bytes | None], Mixer | None]:
    """One batch of chunks coded by the model: (neural payloads, mixed payloads, the mixer), a payload None
    where `neural_encode` gives none and the mixed ones all None without `mixing`. The mixed chunks read
    `history`, the sample or pixel predictor `signal` (`mixing.signal_model`) and the priming `dictionary`.
    `lap(part)` is called after each part: "model" (the parallel forward), "coder", "mixer"."""
    freqs = neural_frequencies(m, chunks)
    lap("model")
    neural = [neural_encode(f, c) for f, c in zip(freqs, chunks)]
    lap("coder")
    mixed, mixer = [None] * len(chunks), None
    if mixing:                  # mixed in place of the neural frequencies, now coded (no fresh memory)
        freqs, mixer = mix_round(freqs, chunks, history, signal, dictionary, out=freqs)
        lap("mixer")
        mixed = [neural_encode(f, c) for f, c in zip(freqs, chunks)]
        lap("coder")
    return neural, mixed, mixer


def as_numpy(a) -> np.ndarray:
    """A numpy array, or a torch tensor (on any device) as one."""
    return a if isinstance(a, np.ndarray) else a.cpu().numpy()


@contextmanager
def torch_threads(n: int):
    """torch's intra-op threads set to n for a while (workers that each hold a core run torch on one); nothing
    where torch is not loaded (the C kernels run one thread each)."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def default_workers(device) -> int:
    """Threads that code a round's chunks in as many batches: one per CPU thread torch would use; one on a GPU."""
    return 1 if resolve_device(device).type == "cuda" else cpu_threads()


DECODE_LANES_PER_THREAD = 2   # on a CPU (see default_decode_lanes)


def default_decode_lanes(device, workers: int) -> int:
    """Chunks decoded together where the options do not say: two a decoding thread on a CPU. Each lane streams
    its own model caches (1.5 MiB of keys and values with the shipped model) and mixer tables, so many at a time
    fall out of cache (1 MiB of text in rounds of 32: 47.4 s at 16 lanes, 49.2 at 64, against 40.2 at 2, with the
    kernels of 2026-12-07 evening), while two a thread share each step's stream of weights (1.6 MB of int8 a
    patch): with the kernels of that night, 2 threads, 256 KiB of text, a photo and a recording decode 3-5%
    faster at 4 lanes than at 2, 1 MiB of text 25.2 against 27.7 s, the same peak memory. A GPU gains from many
    lanes: DEFAULT_LANES there."""
    return DEFAULT_LANES if resolve_device(device).type == "cuda" else DECODE_LANES_PER_THREAD * workers


def run_split(n: int, workers: int, work: Callable[[np.ndarray], object]) -> tuple[list[np.ndarray], list]:
    """work(lanes) for n lanes split into at most `workers` runs of neighbours, on as many threads (the C kernels
    and torch release the GIL; torch runs on one core each): the groups, and their results in order."""
    groups = np.array_split(np.arange(n), max(1, min(workers, n)))
    if len(groups) == 1:
        return groups, [work(groups[0])]
    with torch_threads(max(1, cpu_threads() // len(groups))), ThreadPoolExecutor(len(groups)) as pool:
        return groups, list(pool.map(work, groups))


def neural_decode(m: CodingModel, payloads: list[bytes], sizes: list[int], mixed: list[bool],
                  progress: Callable[[int], None] | None = None,
                  timings: dict[str, float] | None = None, history: History | None = None,
                  signal_of: Callable[[np.ndarray], object | None] = lambda lanes: None,
                  dictionary: History | None = None, workers: int = 1, lanes: int = DEFAULT_LANES,
                  names: list[str] | None = None, whole: bool = True, inputs: tuple[Input, ...] = INPUTS
                  ) -> list[bytes]:
    """Decode several neural/mixed chunks as lanes (one model step per byte for all lanes of a batch);
    mixed chunks read `history` (the rounds before theirs), the priming `dictionary` and, for audio or
    images, the predictor `signal_of(lanes)` gives for those lanes. At most `lanes` chunks are decoded at a
    time (memory follows that, not what the archive declares), each batch split into `workers` parts decoded
    on as many threads (each lane is independent, so any split decodes the same bytes); the weights they hand
    on are the mean over all mixed lanes, as one batch's. `names` (e.g. "mixed chunk 5") name the chunks in
    errors; `whole=False` decodes only the first `sizes` bytes of each payload's chunk; `inputs`: the mixer's, as
    the archive's format version has them (`predictors.inputs_for`). `timings`, when given
    (one worker), accumulates seconds per part of the loop (what `bytezip.speed` reports)."""
    lock = threading.Lock()
    names = names or [f"{'mixed' if x else 'neural'} chunk" for x in mixed]

    def report(n: int):
        with lock:
            progress(n)

    def decode(lanes: np.ndarray):
        return _decode_lanes(m, [payloads[i] for i in lanes], [sizes[i] for i in lanes], [mixed[i] for i in lanes],
                             report if progress else None, timings, history, signal_of(lanes), dictionary,
                             [names[i] for i in lanes], whole, inputs)
    outs, parts = [], []
    for first in range(0, len(sizes), max(1, lanes)):
        batch = np.arange(first, min(len(sizes), first + max(1, lanes)))
        groups, results = run_split(len(batch), workers, lambda part: decode(batch[part]))
        outs += [out for decoded, _ in results for out in decoded]
        parts += [(mixer, np.array(mixed)[batch[part]]) for (_, mixer), part in zip(results, groups)]
    if history is not None:
        history.learn_weights(parts)
    return outs


def _decode_lanes(m: CodingModel, payloads: list[bytes], sizes: list[int], mixed: list[bool],
                  progress: Callable[[int], None] | None, timings: dict[str, float] | None,
                  history: History | None, signal: object | None, dictionary: History | None,
                  names: list[str], whole: bool = True, inputs: tuple[Input, ...] = INPUTS
                  ) -> tuple[list[bytes], Mixer | None]:
    """One batch of `neural_decode`: the decoded chunks, and the mixer (None if no lane is mixed). A lane whose
    bytes so far hold more information than its payload can code (`information_bits`) is rejected at once, so
    garbage costs a few steps, not the whole chunk; one whose payload is longer than what its chunk holds (zero
    words padding a payload that decodes a long run) is rejected at its end. The steps run in C
    (csrc/steps.c) where the kernels can take them all, else in Python (`_python_steps`); with `timings`
    always in Python, whose loop the stopwatch splits into parts."""
    P = m.exact.cfg.patch_size
    longest = max(sizes)
    out = np.zeros((len(sizes), longest), dtype=np.uint8)
    stepper = m.exact.stepper(len(sizes), -(-longest // P))
    mixer = Mixer(sizes, history, signal, dictionary, inputs=inputs) if any(mixed) else None
    lanes = LaneCoding(payloads, sizes, mixed, names, whole, out)
    model_steps, mixer_steps = stepper.kernel_steps(), mixer.kernel_steps() if mixer else None
    if timings is None and model_steps is not None and (mixer is None or mixer_steps is not None):
        _kernel_steps(lanes, stepper, model_steps, mixer, mixer_steps, progress)
    else:
        _python_steps(lanes, stepper, mixer, progress, timings)
    return [out[i, :n].tobytes() for i, n in enumerate(sizes)], mixer


class LaneCoding:
    """What both decoding loops share of a batch: each lane's payload, size, whether it is mixed and its name,
    the output [lanes, longest], and the errors they raise, worded once."""

    def __init__(self, payloads: list[bytes], sizes: list[int], mixed: list[bool], names: list[str], whole: bool,
                 out: np.ndarray):
        self.payloads, self.sizes, self.mixed, self.names = payloads, sizes, mixed, names
        self.whole, self.out = whole, out
        self.payload_bits = 8.0 * np.array([len(p) for p in payloads])

    def invalid(self, i: int) -> FormatError:
        """constriction's "compressed data that is invalid for the employed entropy model", or its C copy's."""
        return FormatError(f"corrupted archive ({self.names[i]} is not a valid range-coder stream)")

    def too_much(self, i: int) -> FormatError:
        return FormatError(f"corrupted archive ({self.names[i]} decodes to more than its {len(self.payloads[i])} "
                           f"bytes can hold)")

    def longer(self, i: int) -> FormatError:
        return FormatError(f"corrupted archive ({self.names[i]} is longer than what it decodes to)")

    def report(self, progress: Callable[[int], None] | None, steps: int, reported: int) -> int:
        """Calls progress with the bytes decoded since `reported` after `steps` steps; returns the new count."""
        done = sum(min(n, steps) for n in self.sizes)
        if progress and done > reported:
            progress(done - reported)
        return done


def _kernel_steps(lanes: LaneCoding, stepper, model_steps: dict, mixer: Mixer | None,
                  mixer_steps: kernels.MixerSteps | None, progress: Callable[[int], None] | None):
    """The decoding loop in C, PROGRESS_STEPS steps a call (the GIL released in each)."""
    B, longest = len(lanes.sizes), lanes.out.shape[1]
    words = [_bytes_to_words(p) for p in lanes.payloads]
    state = {name: np.zeros(B, dtype=np.uint64) for name in ("lower", "range", "point")}
    arrays = dict(next=np.zeros(B, dtype=np.int64), n_words=np.array([len(w) for w in words], dtype=np.int64),
                  lengths=np.array(lanes.sizes, dtype=np.int64), payload_bits=lanes.payload_bits,
                  bits=np.zeros(B), out=lanes.out, freqs=np.empty((B, 256), dtype=np.int64),
                  mixed=np.empty((B, 256), dtype=np.int64), symbols=np.zeros(B, dtype=np.int64),
                  mixed_lane=np.array(lanes.mixed, dtype=np.int64), **state)
    word_table = kernels.pointers(words)
    d = kernels.Decoding(**model_steps, whole=int(lanes.whole), width=longest, slack=float(fmt.INFO_SLACK_BITS),
                         words=ctypes.addressof(word_table), **{k: kernels.pointer(a) for k, a in arrays.items()})
    if mixer_steps is not None:
        d.mix = mixer_steps
    kernels.LIB.decoding_start(ctypes.byref(d))
    reported = 0
    while d.t < longest:
        failed = kernels.LIB.decode_steps(ctypes.byref(d), PROGRESS_STEPS)
        if failed < 0:
            raise MemoryError("the decoding loop is out of memory")
        if failed:                                      # csrc/steps.c: NOT_A_STREAM, TOO_MUCH_INFORMATION, LONGER...
            raise (lanes.invalid, lanes.too_much, lanes.longer)[failed - 1](d.failed_lane)
        reported = lanes.report(progress, d.t, reported)
    stepper.t = d.t
    if mixer:
        mixer.resync()


def _python_steps(lanes: LaneCoding, stepper, mixer: Mixer | None, progress: Callable[[int], None] | None,
                  timings: dict[str, float] | None):
    """The decoding loop in Python, a step at a time: where the kernels are not built, for a model that steps
    in torch, and for `timings` (what `bytezip.speed` splits into parts)."""
    lap = Laps(timings) if timings is not None else (lambda part: None)
    decoders = [constriction.stream.queue.RangeDecoder(_bytes_to_words(p)) for p in lanes.payloads]
    lengths = np.array(lanes.sizes)
    bits = np.zeros(len(lengths))
    limits = lanes.payload_bits + fmt.INFO_SLACK_BITS
    use_mixed = None if all(lanes.mixed) else np.array(lanes.mixed)[:, None]   # None: every lane mixed, or none
    active = np.flatnonzero(lengths > 0)
    ends = {n - 1 for n in lanes.sizes}                               # steps at which some lane's chunk ends
    symbols = np.zeros(len(lengths), dtype=np.int64)
    reported = 0
    lap("setup")
    for t in range(lanes.out.shape[1]):
        freqs = as_numpy(stepper.next_frequencies())
        lap("model_patch_steps" if t % stepper.m.P == 0 else "model_byte_steps")
        if mixer:
            freqs = mixer.mix(freqs) if use_mixed is None else np.where(use_mixed, mixer.mix(freqs), freqs)
        lap("mixer_mix")
        probs = probabilities(freqs)
        lap("coder_probs")
        for i in active:
            try:
                symbols[i] = decoders[i].decode(_CODER_MODEL, probs[i:i + 1])[0]
            except AssertionError:  # constriction: "compressed data that is invalid for the employed entropy model"
                raise lanes.invalid(i) from None
        bits[active] += symbol_bits(probs[active, symbols[active]])
        if (bits[active] > limits[active]).any():
            raise lanes.too_much(active[np.argmax(bits[active] > limits[active])])
        if t in ends:
            ending = active[lengths[active] == t + 1]
            longer = ending[lanes.payload_bits[ending] > bits[ending] + fmt.INFO_SLACK_BITS]
            if lanes.whole and longer.size:
                raise lanes.longer(longer[0])
            active = active[lengths[active] > t + 1]
        lanes.out[:, t] = symbols
        lap("coder_decode")
        stepper.push(symbols)
        lap("model_push")
        if mixer:
            mixer.update(symbols)
        lap("mixer_update")
        if t % PROGRESS_STEPS == PROGRESS_STEPS - 1:
            reported = lanes.report(progress, t + 1, reported)
    lanes.report(progress, lanes.out.shape[1], reported)


class Laps:
    """A stopwatch: each call adds the time since the previous one (or since it was made) to `into[part]`."""

    def __init__(self, into: dict[str, float]):
        self.into, self.last = into, time.perf_counter()

    def __call__(self, part: str):
        now = time.perf_counter()
        self.into[part] = self.into.get(part, 0.0) + now - self.last
        self.last = now


