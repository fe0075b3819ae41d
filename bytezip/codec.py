"""Compressor and decompressor: chunks, lanes and the range coder, with a python-zstandard-like API.

The input is cut into chunks of `chunk_size` bytes. Each chunk is stored with the cheapest of mixed (the
model mixed with match and context models) / neural / lzma / zstd / raw, so no input grows beyond the fixed
header and a few bytes per chunk. A neural chunk is one range-coder stream of its bytes under the exact
model's distributions: the encoder gets them all from one parallel forward; the decoder advances many chunks
together as lanes of one batch, one incremental model step per byte for all lanes.

Chunks are coded in rounds of `round_chunks` (the lanes of one decode batch): a mixed chunk's mixer also
reads every byte of the rounds before its own (`mixing.History`), which is how whole-file repeats and
statistics reach a model with a 4 KB window. Fewer chunks per round means more history for more chunks
but fewer lanes to decode in parallel; `round_chunks_for` picks it from the input size. An image of known
size is coded band by band (`image.coded_index`), so the rows above each chunk are in an earlier round,
and a PNG file as its pixels (`png.split`), the archive carrying what rebuilds the exact file.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import lzma
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

import constriction
import numpy as np
import torch
import zstandard

from . import dictionary as priming
from . import format as fmt
from .exact import ExactMegabyte
from . import image, pcm, png, userdict
from .image import ImageLayout
from .mixing import History, Mixer, Signal, mix_round, signal_model
from .pcm import PcmLayout
from .format import BytezipError, ChecksumError, FormatError, ModelError
from .model import Megabyte, canonical_weights, load_model
from . import registry

MODELS_DIR = registry.package_models_dir()   # the package's models (bytezip.models); see bytezip/registry.py
DEFAULT_MODEL = registry.DEFAULT_MODEL
DEFAULT_LANES = 64           # at most this many chunks decoded together (memory ~ lanes x (KV cache + mixer)):
                             # with 64, 600 MB bound the decoder whatever an archive declares
INFO_CAP_BITS = 24           # a byte costs at most this much in the range coder (its precision)
ENCODER_SLACK_BITS = 32      # the encoder keeps model payloads this far inside the format's information limit
ENCODE_BATCH = 64            # chunks coded together when encoding without history (the mixer's lanes)
ROUNDS = 8                   # an input known to be n chunks is coded in about this many rounds ...
MIN_ROUND_CHUNKS = 1         # ... of at least this many chunks (lanes) ...
MAX_ROUND_CHUNKS = 64        # ... and at most this many (also the round of an input of unknown size)
FORWARD_BATCH = 16           # chunks per parallel forward on a GPU (memory ~ batch x T^2); on the CPU one at a
                             # time: the C kernels gain nothing from a batch, and one chunk's intermediates stay
                             # in cache (14.6 against 16.9 us a byte for 16 at once, 2-core Xeon, 2026-12-04)
ZSTD_LEVEL = 19
SOLID_MAX = 1 << 24          # inputs up to this size are also tried as one zstd chunk (= format's chunk limit)
PROGRESS_STEPS = 64         # decoding reports progress every this many steps
PENDING_BYTES = 1 << 25      # lzma/zstd/raw payload bytes (+ PENDING_OVERHEAD per chunk) held while neural ones wait
PENDING_OVERHEAD = 256

_CODER_MODEL = constriction.stream.model.Categorical(perfect=False)


# -- the model an archive is coded with -------------------------------------------------------------
@dataclass
class CodingModel:
    """An exact model plus the identity recorded in archives (name and digest of its weights), and the
    priming dictionary shipped with it (statistics and digest), if any."""
    exact: ExactMegabyte
    model_id: str
    digest: bytes
    dictionary: History | None = None
    dictionary_digest: bytes = b""

    @property
    def context(self) -> int:
        return self.exact.cfg.patch_size * self.exact.cfg.max_patches


def weights_digest(model: Megabyte) -> bytes:
    """SHA-256 prefix of the canonical weights: the model identity archives record."""
    return hashlib.sha256(canonical_weights(model)).digest()[:fmt.DIGEST_BYTES]


def resolve_model_path(name: str | os.PathLike | None) -> Path:
    """A model is `<prefix>.safetensors` + `<prefix>.json`: a user-given path prefix, directory or installed
    name (`registry.resolve`). Never pass an archive's name here: that is `registry.resolve_for_archive`."""
    return registry.resolve(name, MODELS_DIR)


_loaded: dict[tuple[str, str], CodingModel] = {}


def coding_model(model=None, device="cpu") -> CodingModel:
    """Accepts None (the shipped model), a name or path prefix, a `Megabyte`, or a `CodingModel`."""
    if isinstance(model, CodingModel):
        return model
    device = resolve_device(device)
    if isinstance(model, Megabyte):
        return CodingModel(ExactMegabyte(model, device), "custom", weights_digest(model))
    base = resolve_model_path(model)
    key = (str(base.resolve()), str(device))
    if key not in _loaded:
        try:
            net = load_model(str(base))
            meta = json.loads(Path(str(base) + ".json").read_text())
        except Exception as e:  # a damaged model file is the user's problem to see, in one line
            raise ModelError(f"cannot load model {base}: {e}") from None
        model_id = str(meta.get("name") or base.name)[:255]   # never empty: that means "no model"
        if not model_id.isascii() or not model_id.isprintable():
            raise ModelError(f"model {base}: its name {model_id!r} is not printable ASCII (archives record it)")
        dictionary, dictionary_digest, dictionary_path = None, b"", Path(str(base) + priming.SUFFIX)
        if dictionary_path.is_file():
            try:
                dictionary, dictionary_digest = priming.load(dictionary_path)
            except (OSError, lzma.LZMAError) as e:
                raise ModelError(f"cannot load the dictionary of model {base}: {e}") from None
        _loaded[key] = CodingModel(ExactMegabyte(net, device), model_id, weights_digest(net),
                                   dictionary, dictionary_digest)
    return _loaded[key]


def dictionary_model(ud: userdict.UserDictionary, model=None, device="cpu") -> CodingModel:
    """The model a user dictionary was made for: `model` if given (its weights must be the ones the dictionary
    names), else the installed model of that name."""
    if model is None or (isinstance(model, (str, os.PathLike)) and Path(model).is_dir()):
        model = registry.resolve_for_archive(ud.model_id, model, MODELS_DIR)
    m = coding_model(model, device)
    if m.digest != ud.model_digest:
        raise ModelError(f"the dictionary was made for model '{ud.model_id}' ({ud.model_digest.hex()}), but the "
                         f"model here is '{m.model_id}' ({m.digest.hex()})")
    if m.dictionary_digest != ud.priming_digest:
        raise ModelError(f"the dictionary was made for model '{ud.model_id}' with priming dictionary "
                         f"{ud.priming_digest.hex() or 'none'}, but the model here has "
                         f"{m.dictionary_digest.hex() or 'none'}")
    return m


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BytezipError("--device cuda asked for, but no CUDA device is available")
    return device


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


@functools.lru_cache(maxsize=8)
def _zstd_compressor(chunk_size: int, thread: int) -> zstandard.ZstdCompressor:
    """Level 19 with its tables sized for one chunk (building them for the default 8 MB window is slow); one
    per thread, as a ZstdCompressor is not thread-safe."""
    params = zstandard.ZstdCompressionParameters.from_level(
        ZSTD_LEVEL, source_size=chunk_size, format=zstandard.FORMAT_ZSTD1_MAGICLESS,
        write_content_size=0, write_checksum=0, write_dict_id=0)
    return zstandard.ZstdCompressor(compression_params=params)


def lzma_filters(raw_size: int) -> list[dict]:
    """xz -9e's LZMA2 settings, the dictionary cut to the chunk (the decoder derives the same from raw_size)."""
    return [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME,
             "dict_size": max(4096, min(raw_size, 1 << 26))}]


def _lzma_compress(chunk: bytes) -> bytes:
    return lzma.compress(chunk, format=lzma.FORMAT_RAW, filters=lzma_filters(len(chunk)))


def _lzma_decompress(payload: bytes, raw_size: int, name: str = "lzma chunk") -> bytes:
    d = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=lzma_filters(raw_size))
    try:
        out = d.decompress(payload, max_length=raw_size)
    except lzma.LZMAError as e:
        raise FormatError(f"corrupted archive ({name}: {e})") from None
    if len(out) != raw_size or not d.eof or d.unused_data:
        raise FormatError(f"corrupted archive ({name} has the wrong size)")
    return out


def _zstd_compress(chunk: bytes) -> bytes:
    return _zstd_compressor(len(chunk), threading.get_ident()).compress(chunk)


def _zstd_decompress(payload: bytes, raw_size: int, name: str = "zstd chunk") -> bytes:
    try:
        # our frames declare no content size; one that does must say raw_size, since zstandard allocates
        # whatever a frame declares (up to exabytes), whatever max_output_size says
        declared = zstandard.get_frame_parameters(payload, format=zstandard.FORMAT_ZSTD1_MAGICLESS).content_size
        if declared not in (zstandard.CONTENTSIZE_UNKNOWN, raw_size):
            raise FormatError(f"corrupted archive ({name} declares {declared} bytes, not {raw_size})")
        out = zstandard.ZstdDecompressor(format=zstandard.FORMAT_ZSTD1_MAGICLESS).decompress(
            payload, max_output_size=raw_size)
    except zstandard.ZstdError as e:
        raise FormatError(f"corrupted archive ({name}: {e})") from None
    if len(out) != raw_size:
        raise FormatError(f"corrupted archive ({name} has the wrong size)")
    return out


def neural_frequencies(m: CodingModel, chunks: list[bytes]) -> list[np.ndarray]:
    """Parallel forward over a batch of chunks -> per chunk int64 frequencies [len, 256]."""
    P = m.exact.cfg.patch_size
    width = -(-max(map(len, chunks)) // P) * P
    x = np.zeros((len(chunks), width), dtype=np.int64)
    for i, c in enumerate(chunks):
        x[i, :len(c)] = np.frombuffer(c, dtype=np.uint8)
    out, batch = [], FORWARD_BATCH if m.exact.device.type == "cuda" else 1
    for a in range(0, len(chunks), batch):
        f = m.exact.frequencies(torch.from_numpy(x[a:a + batch])).cpu().numpy()
        out += [f[i, :len(c)] for i, c in enumerate(chunks[a:a + batch])]
    return out


def _smallest(chunk: bytes, neural: bytes | None, mixed: bytes | None) -> tuple[int, bytes]:
    """(codec, payload) of the smallest of zstd, lzma, neural and mixed (their payloads, if any, a model payload
    only within the format's MAX_MODEL_RATIO), else raw."""
    best = (fmt.RAW, chunk)
    candidates = [(fmt.ZSTD, _zstd_compress(chunk)), (fmt.LZMA, _lzma_compress(chunk)), (fmt.NEURAL, neural),
                  (fmt.MIXED, mixed)]
    for codec, payload in candidates:
        if (payload is not None and 0 < len(payload) < len(best[1])
                and (codec not in fmt.MODEL_CODECS or fmt.model_payload_fits(len(chunk), len(payload)))):
            best = (codec, payload)
    return best


def information_bits(probs: np.ndarray, symbols: np.ndarray) -> np.ndarray:
    """Bits of each symbol under its row of `probs` [..., 256], at most INFO_CAP_BITS: the least a range coder
    spends on it, so what a model payload of n bytes decodes to sums to at most 8 n + fmt.INFO_SLACK_BITS."""
    p = np.take_along_axis(probs, np.asarray(symbols, dtype=np.int64)[..., None], -1)[..., 0]
    with np.errstate(divide="ignore"):
        return np.minimum(-np.log2(p), INFO_CAP_BITS)


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


@contextmanager
def torch_threads(n: int):
    """torch's intra-op threads set to n for a while (workers that each hold a core run torch on one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def default_workers(device) -> int:
    """Threads that code a round's chunks in as many batches: one per CPU thread torch would use; one on a GPU."""
    return 1 if resolve_device(device).type == "cuda" else torch.get_num_threads()


def run_split(n: int, workers: int, work: Callable[[np.ndarray], object]) -> tuple[list[np.ndarray], list]:
    """work(lanes) for n lanes split into at most `workers` runs of neighbours, on as many threads (the C kernels
    and torch release the GIL; torch runs on one core each): the groups, and their results in order."""
    groups = np.array_split(np.arange(n), max(1, min(workers, n)))
    if len(groups) == 1:
        return groups, [work(groups[0])]
    with torch_threads(max(1, torch.get_num_threads() // len(groups))), ThreadPoolExecutor(len(groups)) as pool:
        return groups, list(pool.map(work, groups))


def neural_decode(m: CodingModel, payloads: list[bytes], sizes: list[int], mixed: list[bool],
                  progress: Callable[[int], None] | None = None,
                  timings: dict[str, float] | None = None, history: History | None = None,
                  signal_of: Callable[[np.ndarray], Signal | None] = lambda lanes: None,
                  dictionary: History | None = None, workers: int = 1, lanes: int = DEFAULT_LANES,
                  names: list[str] | None = None, whole: bool = True) -> list[bytes]:
    """Decode several neural/mixed chunks as lanes (one model step per byte for all lanes of a batch);
    mixed chunks read `history` (the rounds before theirs), the priming `dictionary` and, for audio or
    images, the predictor `signal_of(lanes)` gives for those lanes. At most `lanes` chunks are decoded at a
    time (memory follows that, not what the archive declares), each batch split into `workers` parts decoded
    on as many threads (each lane is independent, so any split decodes the same bytes); the weights they hand
    on are the mean over all mixed lanes, as one batch's. `names` (e.g. "mixed chunk 5") name the chunks in
    errors; `whole=False` decodes only the first `sizes` bytes of each payload's chunk. `timings`, when given
    (one worker), accumulates seconds per part of the loop (what `bytezip.speed` reports)."""
    lock = threading.Lock()
    names = names or [f"{'mixed' if x else 'neural'} chunk" for x in mixed]

    def report(n: int):
        with lock:
            progress(n)

    def decode(lanes: np.ndarray):
        return _decode_lanes(m, [payloads[i] for i in lanes], [sizes[i] for i in lanes], [mixed[i] for i in lanes],
                             report if progress else None, timings, history, signal_of(lanes), dictionary,
                             [names[i] for i in lanes], whole)
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
                  history: History | None, signal: Signal | None, dictionary: History | None,
                  names: list[str], whole: bool = True) -> tuple[list[bytes], Mixer | None]:
    """One batch of `neural_decode`: the decoded chunks, and the mixer (None if no lane is mixed). A lane whose
    bytes so far hold more information than its payload can code (`information_bits`) is rejected at once, so
    garbage costs a few steps, not the whole chunk; one whose payload is longer than what its chunk holds (zero
    words padding a payload that decodes a long run, which anyone can write) is rejected at its end."""
    lap = _Laps(timings) if timings is not None else (lambda part: None)
    P = m.exact.cfg.patch_size
    decoders = [constriction.stream.queue.RangeDecoder(_bytes_to_words(p)) for p in payloads]
    payload_sizes = np.array([len(p) for p in payloads])
    limits = 8 * payload_sizes + fmt.INFO_SLACK_BITS
    lengths = np.array(sizes)
    bits = np.zeros(len(sizes))
    longest = max(sizes)
    out = np.zeros((len(sizes), longest), dtype=np.uint8)
    stepper = m.exact.stepper(len(sizes), -(-longest // P))
    mixer = None
    if any(mixed):
        mixer = Mixer(sizes, history, signal, dictionary)
    use_mixed = np.array(mixed)[:, None]
    active = np.arange(len(sizes))
    symbols = np.zeros(len(sizes), dtype=np.int64)
    reported = 0
    lap("setup")
    for t in range(longest):
        freqs = stepper.next_frequencies().cpu().numpy()
        lap("model_patch_steps" if t % P == 0 else "model_byte_steps")
        if mixer:
            freqs = np.where(use_mixed, mixer.mix(freqs), freqs)
        lap("mixer_mix")
        probs = probabilities(freqs)
        lap("coder_probs")
        active = active[lengths[active] > t]
        for i in active:
            try:
                symbols[i] = decoders[i].decode(_CODER_MODEL, probs[i:i + 1])[0]
            except AssertionError:  # constriction: "compressed data that is invalid for the employed entropy model"
                raise FormatError(f"corrupted archive ({names[i]} is not a valid range-coder stream)") from None
        bits[active] += information_bits(probs[active], symbols[active])
        if (bits[active] > limits[active]).any():
            i = active[np.argmax(bits[active] > limits[active])]
            raise FormatError(f"corrupted archive ({names[i]} decodes to more than its {len(payloads[i])} "
                              f"bytes can hold)")
        if whole and (ending := active[lengths[active] == t + 1]).size:
            longer = ending[8 * payload_sizes[ending] > bits[ending] + fmt.INFO_SLACK_BITS]
            if longer.size:
                raise FormatError(f"corrupted archive ({names[longer[0]]} is longer than what it decodes to)")
        out[:, t] = symbols
        lap("coder_decode")
        stepper.push(torch.from_numpy(symbols))
        lap("model_push")
        if mixer:
            mixer.update(symbols)
        lap("mixer_update")
        if progress and t % PROGRESS_STEPS == PROGRESS_STEPS - 1:
            done = sum(min(n, t + 1) for n in sizes)
            progress(done - reported)
            reported = done
    if progress:
        progress(sum(sizes) - reported)
    return [out[i, :n].tobytes() for i, n in enumerate(sizes)], mixer


def input_chunks(layout: PcmLayout | ImageLayout | None, round_chunks: int, first: int, n: int) -> np.ndarray:
    """Which chunks of the input records first .. first + n - 1 hold (band order for a banded image)."""
    k = np.arange(first, first + n)
    return image.input_index(k, round_chunks, layout.band_chunks) if isinstance(layout, ImageLayout) else k


class _Laps:
    """Adds the time since the previous call to `into[part]`."""

    def __init__(self, into: dict[str, float]):
        self.into, self.last = into, time.perf_counter()

    def __call__(self, part: str):
        now = time.perf_counter()
        self.into[part] = self.into.get(part, 0.0) + now - self.last
        self.last = now


# -- the public objects -------------------------------------------------------------------------
class Compressor:
    """Configured once, reused for many inputs. `neural=False` codes with lzma/zstd/raw only (no model needed);
    `mixing=False` keeps to the model alone; `history=False` keeps every chunk independent (no shared
    history; decodable with any number of lanes); `round_chunks` fixes the chunks per round (default: from
    the input size); `audio=False` never mixes in the sample predictor (by default it is used when the
    input's start is 16-bit PCM: a WAV header or raw samples, `pcm.detect_layout`), `image=False` never the
    pixel predictor (used for a PPM/PGM header, raw pixels or a PNG's pixels); `solid=True` (the
    command line's default) also tries the whole input as one lzma/zstd chunk and keeps the smaller archive;
    `workers` threads code each round's chunks in as many batches (`default_workers`; the same archive for
    any number). `dictionary`: a user dictionary (`bytezip.userdict`: a path or a loaded `UserDictionary`) that the
    shared history reads before the first round, as `bytezip -D`; it names the model (`model`, if given, must
    be that one), needs the mixer and a shared history, and decoding needs the same dictionary."""

    def __init__(self, *, model=None, device="cpu", chunk_size: int | None = None,
                 batch: int = ENCODE_BATCH, threads: int | None = None, neural: bool = True,
                 mixing: bool = True, history: bool = True, round_chunks: int | None = None,
                 audio: bool = True, image: bool = True, solid: bool = False, workers: int | None = None,
                 dictionary=None):
        if threads:
            torch.set_num_threads(threads)
        self.user_dict = userdict.resolve(dictionary)
        if self.user_dict is not None and not (neural and mixing and history):
            raise BytezipError("a dictionary (-D) needs the model's mixer and shared history "
                               "(not --model none, mixing=False or --no-history)")
        if self.user_dict is not None:
            self.model = dictionary_model(self.user_dict, model, device)
        else:
            self.model = coding_model(model, device) if neural else None
        self.workers = workers or default_workers(device)
        self.mixing, self.solid = mixing, solid
        self.audio = bool(self.model and mixing and audio)
        self.image = bool(self.model and mixing and image)
        self.history = bool(self.model and mixing and history)
        if round_chunks is not None and not 1 <= round_chunks <= fmt.MAX_ROUND_CHUNKS:
            raise BytezipError(f"chunks per round must be between 1 and {fmt.MAX_ROUND_CHUNKS}")
        self.round_chunks = round_chunks
        self.chunk_size = chunk_size or (self.model.context if self.model else 1 << 16)
        if not 1 <= self.chunk_size <= fmt.MAX_CHUNK_SIZE:
            raise BytezipError(f"chunk size must be between 1 and {fmt.MAX_CHUNK_SIZE}")
        if self.model and self.chunk_size > self.model.context:
            raise BytezipError(f"chunk size {self.chunk_size} exceeds the model's context of {self.model.context}")
        self.batch = batch

    def header(self, round_chunks: int = 0, signal: PcmLayout | ImageLayout | None = None,
               envelope: png.Envelope | None = None) -> fmt.Header:
        if self.model:
            dictionary = self.model.dictionary_digest if self.mixing else b""
            if self.user_dict is not None and round_chunks:   # the dictionary names the model
                return fmt.Header(self.chunk_size, round_chunks=round_chunks, signal=signal, png=envelope,
                                  user_digest=self.user_dict.digest)
            return fmt.Header(self.chunk_size, self.model.model_id, self.model.digest, round_chunks, signal,
                              dictionary, envelope)
        return fmt.Header(self.chunk_size)

    def layout_for(self, head: bytes) -> PcmLayout | ImageLayout | None:
        """The sample or pixel layout the mixer assumes for an input starting with `head` (None: neither, or
        no mixer)."""
        return (self.audio and pcm.detect_layout(head)) or (self.image and image.detect_layout(head)) or None

    def round_chunks_for(self, size: int | None) -> int:
        """Chunks per round for an input of `size` bytes (None: unknown); 0 = no shared history."""
        if not self.history:
            return 0
        if self.round_chunks:
            return self.round_chunks
        if size is None:
            return MAX_ROUND_CHUNKS
        return min(MAX_ROUND_CHUNKS, max(MIN_ROUND_CHUNKS, math.ceil(size / self.chunk_size / ROUNDS)))

    def code_chunks(self, chunks: list[bytes], history: History | None = None,
                    layout: PcmLayout | ImageLayout | None = None, starts: np.ndarray | None = None,
                    round_chunks: int = 0) -> list[tuple[int, bytes]]:
        """(codec, payload) for each chunk (chunk i at byte starts[i] of the input): the smallest of mixed
        (reading `history`, and the predictor of the sample or pixel `layout`), neural, lzma, zstd, raw."""
        starts = self.chunk_size * np.arange(len(chunks)) if starts is None else starts

        def code(lanes: np.ndarray) -> tuple[list[tuple[int, bytes]], Mixer | None]:
            part = [chunks[i] for i in lanes]                    # a worker's chunks, coded as one batch
            neural, mixed, mixer = [None] * len(part), [None] * len(part), None
            if self.model:
                freqs = neural_frequencies(self.model, part)
                neural = [neural_encode(f, c) for f, c in zip(freqs, part)]
                if self.mixing:          # mixed in place of the neural frequencies, now coded (no fresh memory)
                    signal = signal_model(layout, starts[lanes], self.chunk_size, round_chunks)
                    freqs, mixer = mix_round(freqs, part, history, signal, self.model.dictionary, out=freqs)
                    mixed = [neural_encode(f, c) for f, c in zip(freqs, part)]
            return [_smallest(chunk, n, m) for chunk, n, m in zip(part, neural, mixed)], mixer
        _, results = run_split(len(chunks), self.workers, code)
        if history is not None:
            history.learn_weights([(mixer, np.array([codec == fmt.MIXED for codec, _ in coded]))
                                   for coded, mixer in results])
        return [c for coded, _ in results for c in coded]

    def copy_stream(self, ifh: BinaryIO, ofh: BinaryIO, progress: Callable[[int], None] | None = None):
        """Compress ifh to ofh. Returns (bytes read, bytes written).

        The first SOLID_MAX + 1 bytes are read ahead, so an input up to SOLID_MAX bytes has a known size (which
        sets the chunks per round) and, with `solid`, is also coded as one lzma/zstd chunk over the whole input
        (long repeats span chunks); the smaller archive is written. A longer input streams, holding one round
        (or `batch` chunks) in memory, plus the shared history (`mixing.HISTORY_MAX`). An image of known
        size is coded band by band (`banded`), a PNG file as its pixels."""
        head = _read_exact(ifh, SOLID_MAX + 1)
        if len(head) > SOLID_MAX:
            return self._copy_chunks(_Prefixed(head, ifh), ofh, progress, self.round_chunks_for(None),
                                     self.layout_for(head))
        envelope, data = (self.image and png.split(head)) or (None, head)
        layout = ImageLayout(envelope.width, envelope.channels) if envelope else self.layout_for(head)
        round_chunks = self.round_chunks_for(len(data))
        layout, coded = self.banded(data, layout, round_chunks)
        ordered = data if coded is not data else None
        if not (self.solid or envelope):
            return self._copy_chunks(io.BytesIO(coded), ofh, progress, round_chunks, layout, ordered=ordered)
        chunked = io.BytesIO()
        self._copy_chunks(io.BytesIO(coded), chunked, progress, round_chunks, layout, envelope, ordered)
        candidates = [chunked.getvalue()]
        if envelope:   # a PNG's pixels may cost more than its (incompressible) file bytes: keep the smaller
            candidates.append(Compressor(neural=False, chunk_size=self.chunk_size).compress(head))
        if self.solid:   # the whole input as one chunk, lzma, zstd or raw, in an archive that needs no model
            candidates.append(Compressor(neural=False, chunk_size=max(1, len(head))).compress(head))
        return len(head), ofh.write(min(candidates, key=len))

    def banded(self, data: bytes, layout, round_chunks: int) -> tuple[PcmLayout | ImageLayout | None, bytes]:
        """An image's layout with its bands set and its chunks in record order (`image.coded_index`): with
        at least two chunks per band and a shared history; anything else unchanged."""
        C = self.chunk_size
        band_chunks = len(data) // C // round_chunks if round_chunks else 0
        if not isinstance(layout, ImageLayout) or band_chunks < 2:
            return layout, data
        layout = layout.banded(band_chunks)
        order = image.input_index(np.arange(-(-len(data) // C)), round_chunks, band_chunks)
        return layout, b"".join(data[j * C:(j + 1) * C] for j in order)

    def _copy_chunks(self, ifh: BinaryIO, ofh: BinaryIO, progress: Callable[[int], None] | None,
                     round_chunks: int, layout: PcmLayout | ImageLayout | None = None,
                     envelope: png.Envelope | None = None, ordered: bytes | None = None):
        """Code ifh's bytes (in record order) as chunk records, `round_chunks` per round, each group followed by
        its check. `ordered`: the input in input order, when the records hold it in another (a banded image),
        for the end record's checksum (over the header and the output as the user gets it)."""
        head = self.header(round_chunks, layout, envelope).to_bytes()
        written = ofh.write(head)
        digest, total, count = hashlib.sha256(head), 0, 0
        if ordered is not None:
            digest.update(ordered)
        checks = fmt.GroupChecks(round_chunks)
        history = self._history() if round_chunks else None
        while True:
            chunks = []
            for _ in range(round_chunks or self.batch):
                c = _read_exact(ifh, self.chunk_size)
                if c:
                    chunks.append(c)
                if len(c) < self.chunk_size:
                    break
            if not chunks:
                break
            starts = self.chunk_size * input_chunks(layout, round_chunks, count, len(chunks))
            for chunk, (codec, payload) in zip(chunks, self.code_chunks(chunks, history, layout, starts,
                                                                        round_chunks)):
                if ordered is None:
                    digest.update(chunk)
                written += ofh.write(fmt.chunk_record_bytes(codec, len(chunk), payload) + checks.add(chunk))
                total += len(chunk)
                count += 1
            if progress:
                progress(sum(map(len, chunks)))
            if history:
                history.extend(b"".join(chunks))
            if len(chunks[-1]) < self.chunk_size:
                break
        written += ofh.write(fmt.Trailer(count, total, digest.digest()[:fmt.DIGEST_BYTES]).to_bytes())
        return total, written

    def _history(self) -> History:
        """A shared history for a new input: empty, or primed with the user dictionary."""
        return self.user_dict.history() if self.user_dict is not None else History()

    def compress(self, data: bytes) -> bytes:
        out = io.BytesIO()
        self.copy_stream(io.BytesIO(data), out)
        return out.getvalue()


class Decompressor:
    """Decodes archives; loads the model only when a neural chunk needs it, and checks it is the right one."""

    def __init__(self, *, model=None, device="cpu", lanes: int = DEFAULT_LANES, threads: int | None = None,
                 workers: int | None = None, dictionary=None):
        """`workers`: threads that decode a round's lanes in as many batches (default: one per CPU thread
        torch would use; one on a GPU). `dictionary`: the user dictionary (`bytezip.userdict`: a path or a loaded
        `UserDictionary`) for archives made with one (others decode without it)."""
        if threads:
            torch.set_num_threads(threads)
        self.user_dict = userdict.resolve(dictionary)
        self._model_arg, self.device, self.lanes = model, device, max(1, lanes)
        self.workers = workers or default_workers(device)

    def _model_for(self, header: fmt.Header) -> CodingModel:
        if isinstance(self._model_arg, (CodingModel, Megabyte)):
            m = coding_model(self._model_arg, self.device)
        else:
            wanted = self._model_arg or header.model_id
            try:       # the archive's name only among installed models, never as a path (registry.py)
                base = registry.resolve_for_archive(header.model_id, self._model_arg, MODELS_DIR)
            except ModelError:
                if not registry.is_plain_name(header.model_id):
                    raise
                raise ModelError(f"archive needs model '{header.model_id}', and model '{wanted}' is not available "
                                 f"(see --model)") from None
            m = coding_model(base, self.device)
        if m.digest != header.model_digest:
            raise ModelError(f"archive was made with model '{header.model_id}' "
                             f"({header.model_digest.hex()}), but the model here is '{m.model_id}' ({m.digest.hex()})")
        if header.dictionary_digest and header.dictionary_digest != m.dictionary_digest:
            have = m.dictionary_digest.hex() if m.dictionary_digest else "none"
            raise ModelError(f"archive needs the dictionary {header.dictionary_digest.hex()} of model "
                             f"'{header.model_id}', but the model here has {have}")
        if header.chunk_size > m.context:
            raise FormatError(f"corrupted archive (chunk size {header.chunk_size} exceeds the model's context)")
        return m

    def copy_stream(self, ifh: BinaryIO, ofh: BinaryIO, progress: Callable[[int], None] | None = None):
        """Decompress ifh to ofh, `lanes` neural chunks at a time; raises unless every check passes.
        Returns (bytes read, bytes written). Output written before a failure must be discarded by the caller."""
        reader = fmt.Reader(ifh)
        header = self._with_dictionary(reader.header())
        if header.png:        # the records are the pixels; the file is rebuilt from them at the end
            pixels = io.BytesIO()
            read, _ = self._copy_records(reader, header, pixels, progress)
            return read, ofh.write(_rebuilt_png(header.png, pixels.getvalue()))
        return self._copy_records(reader, header, ofh, progress)

    def _with_dictionary(self, header: fmt.Header) -> fmt.Header:
        """An archive made with a user dictionary decodes only with that one (ModelError, one line); its header
        then names the dictionary's model and priming dictionary, as if the archive named them itself."""
        if not header.user_digest:
            return header
        ud = self.user_dict
        if ud is None:
            raise userdict.missing(header.user_digest)
        if ud.digest != header.user_digest:
            raise userdict.wrong(header.user_digest, ud)
        return dataclasses.replace(header, model_id=ud.model_id, model_digest=ud.model_digest,
                                   dictionary_digest=ud.priming_digest)

    def _copy_records(self, reader: fmt.Reader, header: fmt.Header, ofh: BinaryIO,
                      progress: Callable[[int], None] | None) -> tuple[int, int]:
        """Decode the records round by round (without a shared history: `lanes` neural chunks or PENDING_BYTES at a
        time), each group's check compared once it is decoded and the end record's checksum at the end."""
        history = ((self.user_dict.history() if header.user_digest else History()) if header.round_chunks
                   else None)
        signal = header.signal
        banded = isinstance(signal, ImageLayout) and signal.band_chunks > 0
        # an archive with a shared history is checked against its model first: the chunk size it may use (so the
        # rounds the history learns from stay small) whatever codec its chunks turn out to have
        model = self._model_for(header) if header.round_chunks else None
        v9 = reader.version >= 9
        digest = hashlib.sha256(reader.header_bytes if v9 else b"")   # version 8: the bytes in record order only
        checks = fmt.GroupChecks(header.round_chunks) if v9 else None
        written = records = 0
        pending: list[tuple[fmt.ChunkRecord, bytes]] = []
        held_back: dict[int, bytes] = {}          # a banded image's chunks, written in input order at the end

        def flush():
            nonlocal model, written, records
            index = input_chunks(signal, header.round_chunks, records, len(pending))
            neural = [(k, r, p, j) for k, ((r, p), j) in enumerate(zip(pending, index), records)
                      if r.codec in fmt.MODEL_CODECS]
            decoded = {}
            if neural:
                model = model or self._model_for(header)
                starts = header.chunk_size * np.array([j for *_, j in neural])
                outs = neural_decode(model, [p for _, _, p, _ in neural], [r.raw_size for _, r, _, _ in neural],
                                     [r.codec == fmt.MIXED for _, r, _, _ in neural], progress, history=history,
                                     signal_of=lambda lanes: signal_model(signal, starts[lanes], header.chunk_size,
                                                                          header.round_chunks),
                                     dictionary=model.dictionary if header.dictionary_digest else None,
                                     workers=self.workers, lanes=self.lanes,
                                     names=[f"{fmt.CODEC_NAMES[r.codec]} chunk {k}" for k, r, _, _ in neural])
                decoded = {id(r): o for (_, r, _, _), o in zip(neural, outs)}
            round_bytes = []
            for k, ((r, p), j) in enumerate(zip(pending, index), records):
                if r.codec in fmt.MODEL_CODECS:
                    data = decoded[id(r)]
                else:
                    data = _plain_decode(r.codec, p, r.raw_size, k)
                    if progress:
                        progress(len(data))
                if checks and checks.add(data) != r.check:
                    raise ChecksumError(f"checksum mismatch in chunks {k + 1 - checks.size}-{k}: the decoded data "
                                        f"is not the original (corrupted archive)")
                if not (banded and v9):      # version 9 checks a banded image's bytes in input order, at the end
                    digest.update(data)
                if banded:
                    held_back[int(j)] = data
                else:
                    written += ofh.write(data)
                if history:
                    round_bytes.append(data)
            if history:
                history.extend(b"".join(round_bytes))
            records += len(pending)
            pending.clear()

        n_neural = held = 0
        for rec, payload in reader.records(header):
            pending.append((rec, payload))
            if rec.codec in fmt.MODEL_CODECS:
                n_neural += 1
            else:
                held += len(payload) + PENDING_OVERHEAD
            # with a shared history the rounds are the archive's; without, any grouping decodes the same
            if (len(pending) == header.round_chunks if header.round_chunks
                    else n_neural >= self.lanes or held >= PENDING_BYTES):
                flush()
                n_neural = held = 0
        flush()
        if v9:
            for j in sorted(held_back):
                digest.update(held_back[j])
        if digest.digest()[:fmt.DIGEST_BYTES] != reader.trailer.checksum:
            raise ChecksumError("checksum mismatch: the decoded data is not the original (corrupted archive)")
        for j in sorted(held_back):
            written += ofh.write(held_back[j])
        return reader.pos, written

    def decompress(self, blob: bytes) -> bytes:
        out = io.BytesIO()
        self.copy_stream(io.BytesIO(blob), out)
        return out.getvalue()


def _rebuilt_png(envelope: png.Envelope, pixels: bytes) -> bytes:
    if len(pixels) != envelope.pixel_bytes:
        raise FormatError(f"corrupted archive ({len(pixels)} bytes of pixels for a PNG of "
                          f"{envelope.width} x {envelope.height} x {envelope.channels})")
    data = png.join(envelope, pixels)
    if len(data) != envelope.size or png.digest(data) != envelope.digest:
        raise ChecksumError("checksum mismatch: the rebuilt PNG is not the original (corrupted archive, "
                            "or a zlib here that deflates differently)")
    return data


def _plain_decode(codec: int, payload: bytes, raw_size: int, index: int) -> bytes:
    """Chunk `index` when it needs no model: raw, zstd or lzma."""
    if codec == fmt.RAW:
        return payload
    decompress = _zstd_decompress if codec == fmt.ZSTD else _lzma_decompress
    return decompress(payload, raw_size, f"{fmt.CODEC_NAMES[codec]} chunk {index}")


class _Prefixed:
    """A stream that first returns `head`, then reads on from `fh`."""

    def __init__(self, head: bytes, fh: BinaryIO):
        self.head, self.fh = head, fh

    def read(self, n: int) -> bytes:
        if self.head:
            out, self.head = self.head[:n], self.head[n:]
            return out
        return self.fh.read(n)


def _read_exact(fh: BinaryIO, n: int) -> bytes:
    """Read n bytes unless the stream ends first (pipes may return short reads)."""
    parts, got = [], 0
    while got < n:
        b = fh.read(n - got)
        if not b:
            break
        parts.append(b)
        got += len(b)
    return b"".join(parts)


@dataclass
class ArchiveInfo:
    header: fmt.Header
    chunks: list[fmt.ChunkRecord]
    trailer: fmt.Trailer
    archive_size: int

    @property
    def original_size(self) -> int:
        """Bytes the archive decodes to (a PNG coded as pixels: the file's, not the pixels')."""
        return self.header.png.size if self.header.png else self.trailer.original_size


def read_info(fh: BinaryIO) -> ArchiveInfo:
    """Parse an archive's structure without decoding (what `bytezip list` shows)."""
    reader = fmt.Reader(fh)
    header = reader.header()
    chunks = [rec for rec, _ in reader.records(header)]
    return ArchiveInfo(header, chunks, reader.trailer, reader.pos)


def compress(data: bytes, **options) -> bytes:
    """Compress bytes with the shipped model (options as for `Compressor`)."""
    return Compressor(**options).compress(data)


def decompress(blob: bytes, **options) -> bytes:
    return Decompressor(**options).decompress(blob)
