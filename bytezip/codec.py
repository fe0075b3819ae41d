"""The Compressor and Decompressor: what is coded in which chunk and round, with a python-zstandard-like API.

The input is cut into chunks of `chunk_size` bytes. Each chunk is stored with the cheapest of mixed (the
model mixed with match and context models) / neural / lzma / zstd / raw, so no input grows beyond the fixed
header and a few bytes per chunk.

Chunks are coded in rounds of up to `lanes` chunks (the lanes of one decode batch): a mixed chunk's mixer also
reads every byte of the rounds before its own (`mixing.History`), which is how whole-file repeats and
statistics reach a model with a 4 KB window. Fewer chunks per round means more history for more chunks
but fewer lanes to decode in parallel; `round_chunks_for` picks the largest round from the input size, and
rounds grow up to it (1, 1, 2, 4, ...: `format.round_sizes`), so only the first chunk codes blind. An image of known
size is coded band by band (`image.coded_index`), so the rows above each chunk are in an earlier round,
and a PNG file as its pixels (`png.split`), the archive carrying what rebuilds the exact file.

This module is the facade only; the parts live where their concerns do: the options and their one set of
defaults in `bytezip.options`, loading the model in `bytezip.loading`, the raw/zstd/lzma chunks in
`bytezip.plain`, the coding loop (model, mixer, range coder, lanes on worker threads) in `bytezip.neural`.
The names they held here before the split are imported here still.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import sys
import types
from dataclasses import dataclass
from typing import BinaryIO, Callable

import numpy as np

from . import format as fmt
from . import frames, image, loading, pcm, png, userdict
from .format import BytezipError, ChecksumError, FormatError, ModelError
from .frames import worker_count
from .image import ImageLayout
# (the names marked F401 were defined here before the split; tests, bytezip.open and callers import them here)
from .loading import CodingModel, archive_model, coding_model, dictionary_model, resolve_device  # noqa: F401
from .loading import resolve_model_path  # noqa: F401
from .mixing import History, signal_model
from .neural import Laps, default_decode_lanes, default_workers, encode_lanes, neural_decode, run_split
from .neural import neural_encode, neural_frequencies  # noqa: F401
from .options import DEFAULT_LANES, DEFAULT_LEVEL, LEVELS, CodingOptions, coding_options
from .pcm import PcmLayout
from .plain import plain_decode, smallest
from .predictors import inputs_for
from .plain import lzma_compress as _lzma_compress, zstd_compress as _zstd_compress  # noqa: F401

ROUNDS = LEVELS[DEFAULT_LEVEL].rounds   # an input known to be n chunks is coded in about this many rounds ...
MIN_ROUND_CHUNKS = 1         # ... of at least this many chunks (lanes) ...
MAX_ROUND_CHUNKS = 64        # ... and at most this many (also the round of an input of unknown size)
SOLID_MAX = 1 << 24          # inputs up to this size are also tried as one zstd chunk (= format's chunk limit)
PENDING_BYTES = 1 << 25      # lzma/zstd/raw payload bytes (+ PENDING_OVERHEAD per chunk) held while neural ones wait
PENDING_OVERHEAD = 256
NO_MODEL_CHUNK = 1 << 16     # the chunk size without a model
MODEL_MIN_BYTES = 16         # with `solid`, an input this short is coded without trying the model: the model's
                             # fields in the header (name, weights and dictionary digests: 28 bytes for
                             # bytezip-v1) cost more than it could save, so the whole-input archive wins anyway


class _Module(types.ModuleType):
    """`codec.MODELS_DIR` reads and sets `loading.MODELS_DIR`, the one place it is kept (it was here before
    the split, and code and tests patch it here)."""

    @property
    def MODELS_DIR(self):
        return loading.MODELS_DIR

    @MODELS_DIR.setter
    def MODELS_DIR(self, value):
        loading.MODELS_DIR = value


sys.modules[__name__].__class__ = _Module


def input_chunks(layout: PcmLayout | ImageLayout | None, round_chunks: int, first: int, n: int) -> np.ndarray:
    """Which chunks of the input records first .. first + n - 1 hold (band order for banded records)."""
    k = np.arange(first, first + n)
    return image.input_index(k, round_chunks, fmt.band_chunks_of(layout))



# -- the public objects -------------------------------------------------------------------------
@dataclass
class Candidates:
    """A chunk's model payloads (None: none fits) and the (codec, payload) the archive takes."""
    neural: bytes | None
    mixed: bytes | None
    best: tuple[int, bytes]


class Compressor:
    """Configured once, reused for many inputs: `Compressor(model=..., lanes=...)`, or
    `Compressor(options=CodingOptions(...))`, keyword-only; each option is a field of
    `bytezip.options.CodingOptions` (whose defaults are the command line's), given fields replacing those of
    `options`. With a shared history each round holds `lanes` chunks (default: from the input size and the
    `level`'s rounds, `round_chunks_for`); without one, `lanes` chunks are coded together. Level 1 runs no
    model. `workers` threads code each batch's
    chunks in as many parts (`default_workers`; the same archive for any number). A user `dictionary` is read
    by the shared history before the first round, as `bytezip -D`; it names the model (`model`, if given,
    must be that one), needs the mixer and a shared history, and decoding needs the same dictionary.
    `round_chunks=` is the older name of `lanes=`."""

    def __init__(self, *, options: CodingOptions | None = None, **fields):
        self.options = o = coding_options(options, **fields)
        loading.set_threads(o.torch_threads)
        self.user_dict = userdict.resolve(o.dictionary)
        level = LEVELS[o.level]
        neural = o.neural and level.rounds is not None            # level 1 runs no model
        if self.user_dict is not None and not (neural and o.mixing and o.history):
            raise BytezipError("a dictionary (-D) needs the model's mixer and shared history "
                               "(not --model none, level 1, mixing=False or --no-history)")
        if self.user_dict is not None:
            self.model = dictionary_model(self.user_dict, o.model, o.device)
        else:
            self.model = coding_model(o.model, o.device) if neural else None
        self.workers = o.workers or default_workers(o.device)
        self.mixing, self.solid = o.mixing, o.solid
        self.audio = bool(self.model and o.mixing and o.audio)
        self.image = bool(self.model and o.mixing and o.image)
        self.history = bool(self.model and o.mixing and o.history)
        self.rounds, self.lanes = level.rounds, o.lanes or level.lanes
        self.chunk_size = o.chunk_size or (self.model.context if self.model else NO_MODEL_CHUNK)
        if self.model and self.chunk_size > self.model.context:
            raise BytezipError(f"chunk size {self.chunk_size} exceeds the model's context of {self.model.context}")

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
        if self.lanes:
            return self.lanes
        if size is None:
            return MAX_ROUND_CHUNKS
        return min(MAX_ROUND_CHUNKS, max(MIN_ROUND_CHUNKS, math.ceil(size / self.chunk_size / self.rounds)))

    def code_chunks(self, chunks: list[bytes], history: History | None = None,
                    layout: PcmLayout | ImageLayout | None = None, starts: np.ndarray | None = None,
                    round_chunks: int = 0, timings: dict[str, float] | None = None,
                    first_record: int = 0) -> list[tuple[int, bytes]]:
        """(codec, payload) for each chunk (chunk i at byte starts[i] of the input): the smallest of mixed
        (reading `history`, which holds the records before `first_record`, the chunks' first, and the predictor
        of the sample or pixel `layout`), neural, lzma, zstd, raw. `timings`: as for `code_candidates`."""
        return [c.best for c in self.code_candidates(chunks, history, layout, starts, round_chunks, timings,
                                                     first_record)]

    def code_candidates(self, chunks: list[bytes], history: History | None = None,
                        layout: PcmLayout | ImageLayout | None = None, starts: np.ndarray | None = None,
                        round_chunks: int = 0, timings: dict[str, float] | None = None,
                        first_record: int = 0) -> list[Candidates]:
        """`code_chunks` with every candidate kept: each chunk's model payloads (neural, mixed) and the one the
        archive takes. `timings`, when given, accumulates seconds per part: "model" (the parallel forward),
        "mixer", "coder" (the range coder, both model candidates), "zstd", "lzma", summed over the workers
        (what `bytezip.speed` reports)."""
        starts = self.chunk_size * np.arange(len(chunks)) if starts is None else starts
        laps: list[dict[str, float]] = []

        def code(lanes: np.ndarray):
            part = [chunks[i] for i in lanes]                    # a worker's chunks, coded as one batch
            lap = lambda part: None
            if timings is not None:
                laps.append({})
                lap = Laps(laps[-1])
            neural, mixed, mixer = [None] * len(part), [None] * len(part), None
            if self.model:
                signal = signal_model(layout, starts[lanes], self.chunk_size, round_chunks, history=history,
                                      first_record=first_record) if self.mixing else None
                neural, mixed, mixer = encode_lanes(self.model, part, self.mixing, history, signal,
                                                    self.model.dictionary, lap)
            return [Candidates(n, m, smallest(chunk, n, m, lap, history_span(history, chunk)))
                    for chunk, n, m in zip(part, neural, mixed)], mixer
        _, results = run_split(len(chunks), self.workers, code)
        if history is not None:
            history.learn_weights([(mixer, np.array([c.best[0] == fmt.MIXED for c in coded]))
                                   for coded, mixer in results])
        for lapped in laps:
            for part, seconds in lapped.items():
                timings[part] = timings.get(part, 0.0) + seconds
        return [c for coded, _ in results for c in coded]

    def copy_stream(self, ifh: BinaryIO, ofh: BinaryIO, progress: Callable[[int], None] | None = None):
        """Compress ifh to ofh. Returns (bytes read, bytes written).

        The first SOLID_MAX + 1 bytes are read ahead, so an input up to SOLID_MAX bytes has a known size (which
        sets the chunks per round) and, with `solid`, is also coded as one lzma/zstd chunk over the whole input
        (long repeats span chunks); the smaller archive is written. A longer input streams, holding one round
        (or `batch` chunks) in memory, plus the shared history (`mixing.HISTORY_MAX`). An image of known
        size is coded band by band (`banded`), a PNG file as its pixels. With a `frame_size`, the input is coded
        as frames of that many bytes, each a whole archive (`bytezip.frames`, in `processes` at once)."""
        if self.options.frame_size:
            return frames.compress(self, ifh, ofh, progress)
        return self._copy_frame(ifh, ofh, progress)

    def compress_frame(self, data: bytes) -> bytes:
        """One frame: `data` as a whole archive, whatever `frame_size` says."""
        out = io.BytesIO()
        self._copy_frame(io.BytesIO(data), out)
        return out.getvalue()

    def _copy_frame(self, ifh: BinaryIO, ofh: BinaryIO, progress: Callable[[int], None] | None = None):
        head = _read_exact(ifh, SOLID_MAX + 1)
        if self.solid and len(head) <= MODEL_MIN_BYTES:
            return len(head), ofh.write(_solid_archive(head))
        if len(head) > SOLID_MAX:
            return self._copy_chunks(fmt.Prefixed(head, ifh), ofh, progress, self.round_chunks_for(None),
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
            candidates.append(Compressor(neural=False, solid=False, chunk_size=self.chunk_size).compress(head))
        if self.solid:
            candidates.append(_solid_archive(head))
        return len(head), ofh.write(min(candidates, key=len))

    def banded(self, data: bytes, layout, round_chunks: int) -> tuple[PcmLayout | ImageLayout | None, bytes]:
        """An image's or audio's layout with its bands set and its chunks in record order
        (`image.coded_index`): with at least two chunks per band and a shared history; anything else
        unchanged."""
        C = self.chunk_size
        band_chunks = len(data) // C // round_chunks if round_chunks else 0
        if not isinstance(layout, (PcmLayout, ImageLayout)) or band_chunks < 2:
            return layout, data
        layout = layout.banded(band_chunks)
        order = image.input_index(np.arange(-(-len(data) // C)), round_chunks, band_chunks)
        return layout, b"".join(data[j * C:(j + 1) * C] for j in order)

    def _copy_chunks(self, ifh: BinaryIO, ofh: BinaryIO, progress: Callable[[int], None] | None,
                     round_chunks: int, layout: PcmLayout | ImageLayout | None = None,
                     envelope: png.Envelope | None = None, ordered: bytes | None = None):
        """Code ifh's bytes (in record order) as chunk records in rounds (`fmt.round_sizes`: growing up to
        `round_chunks`), each group followed by its check. `ordered`: the input in input order, when the records
        hold it in another (a banded image), for the end record's checksum (over the header and the output as the
        user gets it)."""
        header = self.header(round_chunks, layout, envelope)
        head = header.to_bytes()
        written = ofh.write(head)
        digest, total, count = hashlib.sha256(head), 0, 0
        if ordered is not None:
            digest.update(ordered)
        checks = fmt.GroupChecks(round_chunks, fmt.growing(header))
        rounds = fmt.round_sizes(round_chunks, fmt.growing(header)) if round_chunks else None
        history = self._history() if round_chunks else None
        while True:
            chunks = []
            for _ in range(next(rounds) if rounds else self.lanes or DEFAULT_LANES):
                c = _read_exact(ifh, self.chunk_size)
                if c:
                    chunks.append(c)
                if len(c) < self.chunk_size:
                    break
            if not chunks:
                break
            starts = self.chunk_size * input_chunks(layout, round_chunks, count, len(chunks))
            for chunk, (codec, payload) in zip(chunks, self.code_chunks(chunks, history, layout, starts,
                                                                        round_chunks, first_record=count)):
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

    def __init__(self, *, options: CodingOptions | None = None, **fields):
        """Options as for `Compressor` (the same `CodingOptions`; those an archive records are not read here):
        `model` (default: the one the archive names), `device`, `threads`, `lanes` (the most neural chunks
        decoded together, default `neural.default_decode_lanes`: two a worker on a CPU), `workers` (threads
        that decode a batch's lanes in as many parts; default: one per CPU thread torch would use, one on a
        GPU), `dictionary` (the user dictionary, a path or a loaded `UserDictionary`, for archives made with
        one; others decode without it)."""
        self.options = o = coding_options(options, **fields)
        loading.set_threads(o.torch_threads)
        self.user_dict = userdict.resolve(o.dictionary)
        self._model_arg, self.device = o.model, o.device
        self.workers = o.workers or default_workers(o.device)
        self.lanes = o.lanes or default_decode_lanes(o.device, self.workers)

    def _model_for(self, header: fmt.Header) -> CodingModel:
        m = archive_model(header.model_id, self._model_arg, self.device)
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
        """Decompress ifh to ofh, frame after frame (`format`: concatenated archives decode to the concatenated
        inputs), `lanes` neural chunks at a time; raises unless every check passes. Returns (bytes read, bytes
        written). Output written before a failure must be discarded by the caller."""
        if worker_count(self.options) > 1:
            return frames.decompress(self, ifh, ofh, progress)
        return self.copy_frames(ifh, ofh, progress)

    def copy_frames(self, ifh: BinaryIO, ofh: BinaryIO, progress: Callable[[int], None] | None = None):
        """`copy_stream` in this thread, whatever `processes` says (what a worker, or a thread of
        `frames.decompress`, runs)."""
        reader, seen = fmt.Reader(ifh), []           # (bytes, size) of each frame decoded
        while True:
            header = self._with_dictionary(reader.header())
            if header.png:        # the records are the pixels; the file is rebuilt from them at the end
                pixels = io.BytesIO()
                self._copy_records(reader, header, pixels, progress)
                written = ofh.write(_rebuilt_png(header.png, pixels.getvalue()))
            else:
                written = self._copy_records(reader, header, ofh, progress)[1]
            seen.append((reader.pos, written))
            following = reader.next_frame()
            if following is None:
                break
            reader = following
        frames.check_seek_table(reader.seek_table, seen)
        return sum(a for a, _ in seen) + frames.seek_table_size(reader.seek_table), sum(b for _, b in seen)

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
        banded = fmt.band_chunks_of(signal) > 0
        # an archive with a shared history is checked against its model first: the chunk size it may use (so the
        # rounds the history learns from stay small) whatever codec its chunks turn out to have
        model = self._model_for(header) if header.round_chunks else None
        v9 = reader.version >= 9
        digest = hashlib.sha256(reader.header_bytes if v9 else b"")   # version 8: the bytes in record order only
        grows = fmt.growing(header, reader.version)
        checks = fmt.GroupChecks(header.round_chunks, grows) if v9 else None
        rounds = fmt.round_sizes(header.round_chunks, grows) if header.round_chunks else None
        round_size = next(rounds) if rounds else 0
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
                                     signal_of=lambda lanes: signal_model(
                                         signal, starts[lanes], header.chunk_size, header.round_chunks,
                                         history=history, first_record=records,
                                         inputs=inputs_for(reader.version)),
                                     dictionary=model.dictionary if header.dictionary_digest else None,
                                     workers=self.workers, lanes=self.lanes,
                                     names=[f"{fmt.CODEC_NAMES[r.codec]} chunk {k}" for k, r, _, _ in neural],
                                     inputs=inputs_for(reader.version))
                decoded = {id(r): o for (_, r, _, _), o in zip(neural, outs)}
            elif history is not None:     # what the encoder's round hands on without a mixed chunk: no tables
                history.learn_weights([])
            round_bytes = []
            for k, ((r, p), j) in enumerate(zip(pending, index), records):
                if r.codec in fmt.MODEL_CODECS:
                    data = decoded[id(r)]
                else:
                    data = plain_decode(r.codec, p, r.raw_size, k, memoryview(history.data) if history else b"")
                    if progress:
                        progress(len(data))
                first = checks.first if checks else 0
                if checks and checks.add(data) != r.check:
                    raise ChecksumError(f"checksum mismatch in chunks {first}-{k}: the decoded data "
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
            if (len(pending) == round_size if rounds else n_neural >= self.lanes or held >= PENDING_BYTES):
                flush()
                n_neural = held = 0
                round_size = next(rounds) if rounds else 0
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


def history_span(history: History | None, chunk: bytes) -> tuple[int, bytes] | None:
    """(start, bytes) of the shared history that a chunk repeats, for its history zstd candidate; None: none."""
    span = history.span_of(chunk) if history is not None else None
    return span and (span[0], history.data[span[0]:span[0] + span[1]].tobytes())


def _solid_archive(data: bytes) -> bytes:
    """The whole input as one chunk, lzma, zstd or raw, in an archive that needs no model (`solid`)."""
    return Compressor(neural=False, solid=False, chunk_size=max(1, len(data))).compress(data)


def _rebuilt_png(envelope: png.Envelope, pixels: bytes) -> bytes:
    if len(pixels) != envelope.pixel_bytes:
        raise FormatError(f"corrupted archive ({len(pixels)} bytes of pixels for a PNG of "
                          f"{envelope.width} x {envelope.height} x {envelope.channels})")
    data = png.join(envelope, pixels)
    if len(data) != envelope.size or png.digest(data) != envelope.digest:
        raise ChecksumError("checksum mismatch: the rebuilt PNG is not the original (corrupted archive, "
                            "or a zlib here that deflates differently)")
    return data


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
    """An archive's structure: its first frame's header, every frame's chunk records in order, the end
    record (of a single frame; for several, their chunk counts and sizes summed, the first one's checksum)."""
    header: fmt.Header
    chunks: list[fmt.ChunkRecord]
    trailer: fmt.Trailer
    archive_size: int
    frame_sizes: list[int] = dataclasses.field(default_factory=list)   # bytes each frame decodes to
    seek_table: list[tuple[int, int]] | None = None                      # (frame bytes, frame size) each

    @property
    def frames(self) -> int:
        return len(self.frame_sizes)

    @property
    def original_size(self) -> int:
        """Bytes the archive decodes to (a PNG coded as pixels: the file's, not the pixels')."""
        return sum(self.frame_sizes)


def read_info(fh: BinaryIO) -> ArchiveInfo:
    """Parse an archive's structure, every frame, without decoding (what `bytezip list` shows)."""
    reader, info = fmt.Reader(fh), None
    while reader is not None:
        header = reader.header()
        chunks = [rec for rec, _ in reader.records(header)]
        t = reader.trailer
        if info is None:
            info = ArchiveInfo(header, chunks, t, reader.pos)
        else:
            info.chunks += chunks
            info.trailer = fmt.Trailer(info.trailer.chunk_count + t.chunk_count,
                                       info.trailer.original_size + t.original_size, info.trailer.checksum)
            info.archive_size += reader.pos
        info.frame_sizes.append(header.png.size if header.png else t.original_size)
        following = reader.next_frame()
        if following is None:
            info.seek_table = reader.seek_table
            info.archive_size += frames.seek_table_size(reader.seek_table)
        reader = following
    return info


def compress(data: bytes, **options) -> bytes:
    """Compress bytes with the shipped model (options as for `Compressor`)."""
    return Compressor(**options).compress(data)


def decompress(blob: bytes, **options) -> bytes:
    return Decompressor(**options).decompress(blob)
