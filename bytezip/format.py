"""The .bzp archive format (version 12): frames, each a header, one record per chunk with a check after each group,
and an end record.

All integers are unsigned LEB128 varints unless a width is given. The layout is written so that an
archive can be produced and consumed as a stream, one chunk at a time, and every declared size is bounded
before anything is allocated for it.

    header   magic b"\\x89BZP" | version u8 = 12 | flags u8 | chunk_size | round_chunks | signal
             | signal fields (see below) | model fields | png_size | png envelope (png_size bytes; only with flag 0x01)
    model    without flag 0x02: model_id_len u8 | model_id (ASCII) | model_digest 8 bytes (SHA-256 prefix of the
             canonical weights) | dictionary u8 (0 none, 1 one follows) | dictionary_digest 8 bytes (SHA-256 prefix
             of the dictionary's bytes) (the fields after model_id only when model_id is not empty);
             with flag 0x02: user_digest 8 bytes, and nothing else
    chunk    codec u8 (0 raw, 1 zstd, 2 neural, 3 mixed, 4 lzma, 5 history zstd) | raw_size | coded_size
             | payload (coded_size bytes)
             | group_check 4 bytes (only after the last record of each group, see below)
    end      0xFF | chunk_count | original_size | checksum 8 bytes (SHA-256 prefix of the header's bytes followed
             by the original bytes in the order the user gets them)

Groups (new in version 9): the records are taken in groups of the fewest whole rounds that hold at least
CHECK_GROUP = 64 chunks (groups of 64 chunks when round_chunks is 0) in record order; after the last record of each
complete group comes group_check, the first 4 bytes of the SHA-256 of that group's decoded bytes in record
order, so damage is reported when its group is decoded, not after the whole archive. The end record's checksum covers the header (every field that decides
what is decoded and in which order) and the output as written, so no change to either passes unnoticed
(version 8's covered the decoded bytes in record order only: a changed band or round size that reordered raw
chunks went unseen).

round_chunks: 0, or the number of chunks per round (<= 1024) when mixed chunks read a shared history: the
chunks are grouped in rounds in record order, and a mixed chunk's mixer also reads every byte of the rounds
before its own (`bytezip.mixing.History`); 0 keeps every chunk independent of the others. Rounds grow (new in
version 10, `round_sizes`): unless the records are bands, round k holds min(round_chunks, 2^(k-1))
chunks (round 0 one chunk): 1, 1, 2, 4, ... up to round_chunks, then round_chunks each, so that only the first
chunk codes with no history (versions 8 and 9: every round holds round_chunks; an eighth of an input coded
blind; `benchmarks/ROUNDS.md`). Bands keep rounds of round_chunks (a round's lanes are its bands).

signal: 0 (none, no fields); 1 / 2 (that many channels) | pcm_offset when the input holds interleaved 16-bit
little-endian samples from byte pcm_offset on (`bytezip.pcm.PcmLayout`): mixed chunks then also mix a sample
predictor (`bytezip.predictors.pcm`); 4 | channels (1, 2) | pcm_offset | band_chunks (new in version 13) the same
with band_chunks > 0, the records in band order as an image's below; 3 | width | channels (1-4) | offset |
band_chunks when it holds rows of
`width` pixels of 8-bit samples from byte offset on (`bytezip.image.ImageLayout`): mixed chunks mix a pixel
predictor (`bytezip.image.ImageModel`), and with band_chunks > 0 the records are in band order
(`bytezip.image.coded_index`: the first round_chunks x band_chunks chunks of the input as round_chunks bands,
record k holding chunk (k % round_chunks) x band_chunks + k // round_chunks; the rest in order; band_chunks
is original_size // chunk_size // round_chunks, and round_chunks x band_chunks x chunk_size <= 2^24, or 2^26
for a PNG's pixels: what an encoder held whole); the output is the chunks in input order. (`band_chunks_of`.)

dictionary: mixed chunks read the model's priming dictionary (`bytezip.dictionary`) with this digest.

flag 0x02 (new in version 9): the archive is coded with a user dictionary (`bytezip.userdict`, made by
`bytezip --train-dict`), and user_digest (the SHA-256 prefix of its body) takes the place of the model fields:
the dictionary names the model, its digest and its priming dictionary, which the archive then uses as if it
named them itself (a small file's header is 18 bytes, not 46). The shared history starts primed with the
dictionary: before the first round it reads the dictionary's sample bytes (`History.extend`), as if they were
a round before the file, and the mixers of the first round start from the dictionary's weights
(`History.carried`). Only with round_chunks > 0; a decoder without that dictionary refuses the archive.

flags: 0x01 and 0x02 may be combined; 0x01 when the input is a PNG file coded as its pixels (`bytezip.png`): the records hold the
pixels (signal 3, offset 0, of the envelope's width and channels) and the envelope, a zstd frame of the
fields of `bytezip.png.Envelope` (varints; the bytes before and after the IDAT chunks, the filter type of
each row, the zlib settings, the file's size and an 8-byte SHA-256 prefix), rebuilds the file from them.

Rules a decoder checks: varints are minimal (no overlong encodings); flags has no bits but 0x01 and 0x02 (0x02
only from version 9 on, with round_chunks > 0, and it counts as naming a model in the rules below), 0x01 only with an
image signal whose layout is the envelope's, the envelope parses and the pixels fill it, the rebuilt file has its digest; the model id is printable
ASCII, a plain name ([A-Za-z0-9][A-Za-z0-9._-]*) that decoders look up among installed models, never as a
path; chunk_size <= MAX_MODEL_CHUNK (2^16) when a model is named (no model has a longer context); round_chunks
and signal are 0 without a model; signal <= 3; band_chunks > 0 only with round_chunks > 0; no neural chunk without a model; 1 <= chunk_size <= 2^24; every chunk
but the last has raw_size == chunk_size and the last 1 <= raw_size <= chunk_size; coded_size <= raw_size
(the encoder stores a chunk raw rather than let it grow) and a raw chunk has coded_size == raw_size; a zstd
payload is a magicless zstd frame; a history zstd payload (version 11 on, only with round_chunks > 0) is
prefix_start | prefix_size | a magicless zstd frame coded with the shared history's bytes
[prefix_start, prefix_start + prefix_size) as its raw-content dictionary (`History.data` as it stands when the
chunk's round begins: the rounds before it, after the user dictionary's sample if any), 1 <= prefix_size <=
MAX_HISTORY_PREFIX and the span within the history: a block repeated far back costs a few bytes a chunk, decoded
at zstd's speed (a model payload may not code that few: MAX_MODEL_RATIO); an lzma payload is a raw LZMA2
stream (`lzma_filters`); a neural payload is the range coder's little-endian 32-bit words with
trailing zero bytes dropped, so it never ends in one (any version: a decoder rejects one that does at its
record, where zero words would pad a payload that decodes a long run); its distributions: the exact model's,
or for "mixed" those of `bytezip.mixing`, whose geometric stage is new in version 5,
the dictionary match model, the learnt blend and the weights carried from round to round in 6, a second
geometric mix (weights per class of the previous byte) in 7, in 8 every square root of the exact model
correctly rounded, where 7 took torch's CPU one, and in 11 three context models over the chunk that are not
the last k bytes, off for samples and pixels: bytes 2-3 back, the field of a delimited line, the byte in the
line above, `predictors.context`; chunk_count and original_size match the records; the checksum matches the
decoded bytes; nothing follows. A model-coded chunk (version 9 on) has raw_size <= MAX_MODEL_RATIO x coded_size
(64: a chunk the model would code in fewer bits, 1/8 bit a byte, is stored with zstd or lzma instead), so
model decoding work is bounded by the archive's size: at most 64 model steps per lane per archive byte. Its size
in bits is within INFO_SLACK_BITS of the information it decodes to (any version), the information under its
distributions with each byte counted at most 24 bits (the coder's precision): a range coder's words hold no
more and need no more than that, so a decoder rejects a payload as soon as the bytes it decoded hold more
(garbage, after a few steps rather than at the end), and at the chunk's end one that held less (zero words
padding a payload that decodes a long run).

Frames (new in version 10): a .bzp stream is one or more frames, each a complete archive as above (header,
records, end record) of its part of the output; a decoder decodes them in order and writes their outputs one
after another, so two archives concatenated (`cat a.bzp b.bzp`) are an archive of the two inputs concatenated,
as with gzip members and zstd frames. After an end record comes the next frame's magic or the end of the
stream; anything else is corruption. A frame may be of any version a decoder reads.

    seek     magic | version u8 (10 on) | flags u8 = 0x04 | frame_count | (frame_bytes | frame_size) per frame
             | checksum 8 bytes (SHA-256 prefix of the seek frame's bytes before it) | table_bytes u32 LE (the seek
             frame's bytes before this field) | b"BZPS"

The seek table (optional, written with frames): the stream's last frame, listing every frame before it, its
bytes in the stream (from its magic through its end record) and the bytes it decodes to, so that a reader can
find it from the stream's end (the last 8 bytes) and decode any byte range from the frames that hold it alone
(`bytezip.frames.read_range`). A decoder reading the stream in order checks the table against the frames it
decoded; nothing follows it.

Decoders read versions 8 to 14 (`READ_VERSIONS`); version 13 is version 14 whose pixel predictor blends 8
predictions by their errors in its activity context alone (`predictors.INPUTS_V13`: `CarriedImageModel` in
place of `WeightedImageModel`; the layout is the same, the coded bytes of mixed image chunks differ);
version 12 is version 13 whose audio predictor has no
second stage and no warm start and whose pixel predictor starts each chunk from nothing
(`predictors.INPUTS_V12`: `PcmModel` and `ImageModel` in place of `CascadePcmModel` and `CarriedImageModel`;
audio is not banded; otherwise the layout is the same, the coded bytes of mixed audio and image chunks differ);
version 11 is version 12 whose mixed chunks' mixer has no
record context (`predictors.INPUTS_V11`: the layout is the same, the coded bytes differ); version 10 is version
11 without history zstd chunks and the three context models it added;
version 9 is version 10 with rounds that do not grow;
version 8 is version 9 without the group checks and the model ratio limit, its checksum over the decoded bytes
in record order. A sample archive of each version, with its
original, is kept in tests/archives/vN and decoded by the tests.
"""
from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from typing import BinaryIO, Iterator

import zstandard

from .image import ImageLayout
from .pcm import PcmLayout
from .png import CHANNELS, DIGEST_BYTES as PNG_DIGEST_BYTES, MAX_ENVELOPE, MAX_PIXELS, Envelope, valid_zlib_settings

MAGIC = b"\x89BZP"
VERSION = 14
READ_VERSIONS = (8, 9, 10, 11, 12, 13, 14)   # every version that has shipped since the format was frozen keeps decoding
CHECK_GROUP = 64          # records per group check: at least this many, in whole rounds
GROUP_CHECK_BYTES = 4
MAX_MODEL_CHUNK = 1 << 16  # chunk size limit of an archive that names a model
MAX_MODEL_RATIO = 64      # a model payload codes at most this many bytes a byte (version 9 on)
MAX_HISTORY_PREFIX = 1 << 20   # the history bytes a history zstd chunk may read (version 11)
INFO_SLACK_BITS = 128     # the range coder's final words and float rounding (the encoder keeps 32 bits inside)
MAX_PCM_OFFSET = 1 << 40
MAX_IMAGE_WIDTH = 1 << 24
IMAGE_SIGNAL = 3
BANDED_PCM_SIGNAL = 4     # version 13 on
MAX_CHUNK_SIZE = 1 << 24
MAX_ROUND_CHUNKS = 1024
FLAG_PNG = 0x01
FLAG_USER_DICT = 0x02     # version 9 on: a user dictionary's digest follows the model fields
FLAG_SEEK = 0x04          # version 10: the seek table, the last frame
SEEK_MAGIC = b"BZPS"      # the stream's last 4 bytes when it ends with a seek table
MAX_FRAMES = 1 << 32
RAW, ZSTD, NEURAL, MIXED, LZMA, HISTORY_ZSTD = 0, 1, 2, 3, 4, 5
CODEC_NAMES = {RAW: "raw", ZSTD: "zstd", NEURAL: "neural", MIXED: "mixed", LZMA: "lzma", HISTORY_ZSTD: "history zstd"}
MODEL_CODECS = (NEURAL, MIXED)
END = 0xFF
DIGEST_BYTES = 8
READ_PIECE = 1 << 20      # payloads are read at most this much at a time
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")   # what an archive may name: never a path


class BytezipError(Exception):
    """Any problem bytezip reports to a user: the message is one line, fit to print after the file name."""


class FormatError(BytezipError):
    """The bytes are not a valid bytezip archive (wrong magic, truncated, corrupted, inconsistent)."""


class ModelError(BytezipError):
    """The archive needs a model that is not available or whose weights differ."""


class ChecksumError(BytezipError):
    """The decoded bytes do not match the checksum stored in the archive."""


def encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def envelope_bytes(env: Envelope) -> bytes:
    """A PNG envelope as stored after the header: a zstd frame of its fields."""
    fields = [env.width, env.height, env.channels, *env.zlib_settings, len(env.idat_sizes), *env.idat_sizes,
              len(env.before)]
    body = (b"".join(map(encode_varint, fields)) + env.before + encode_varint(len(env.after)) + env.after
            + env.filters + encode_varint(env.size) + env.digest)
    return zstandard.ZstdCompressor(level=19).compress(body)


def parse_envelope(blob: bytes) -> Envelope:
    """The envelope `envelope_bytes` stored; raises FormatError on anything inconsistent."""
    try:
        # zstandard allocates whatever a frame declares, whatever max_output_size says: check it first
        declared = zstandard.get_frame_parameters(blob).content_size
        if declared != zstandard.CONTENTSIZE_UNKNOWN and declared > MAX_ENVELOPE:
            raise FormatError(f"corrupted archive (PNG envelope declares {declared} bytes)")
        body = zstandard.ZstdDecompressor().decompress(blob, max_output_size=MAX_ENVELOPE)
    except zstandard.ZstdError as e:
        raise FormatError(f"corrupted archive (PNG envelope: {e})") from None
    r = Reader(io.BytesIO(body))
    width, height = r.varint("PNG width", 1 << 31), r.varint("PNG height", 1 << 31)
    channels = r.varint("PNG channels", 4)
    settings = tuple(r.varint("zlib setting", 15) for _ in range(4))
    sizes = tuple(r.varint("IDAT size", 1 << 31) for _ in range(r.varint("IDAT count", MAX_ENVELOPE)))
    before = r.read(r.varint("PNG head size", MAX_ENVELOPE), "PNG head")
    after = r.read(r.varint("PNG tail size", MAX_ENVELOPE), "PNG tail")
    filters = r.read(height, "PNG filters")
    size, digest = r.varint("PNG size", 1 << 60), r.read(PNG_DIGEST_BYTES, "PNG digest")
    env = Envelope(width, height, channels, before, after, sizes, settings, filters, size, digest)
    if (not width or not height or channels not in CHANNELS.values() or env.pixel_bytes > MAX_PIXELS
            or max(filters) > 4 or not sizes or r.fh.read(1) or not valid_zlib_settings(*settings)):
        raise FormatError(f"corrupted archive (PNG envelope {width} x {height} x {channels})")
    return env


@dataclass
class Header:
    chunk_size: int
    model_id: str = ""
    model_digest: bytes = b""
    round_chunks: int = 0
    signal: PcmLayout | ImageLayout | None = None
    dictionary_digest: bytes = b""
    png: Envelope | None = None     # with flag 0x01: the records are this PNG's pixels
    user_digest: bytes = b""        # with flag 0x02: the user dictionary the shared history starts from

    @property
    def has_model(self) -> bool:
        """Whether the archive is coded with a model: named, or the one its user dictionary names."""
        return bool(self.model_id or self.user_digest)

    @property
    def flags(self) -> int:
        return (FLAG_PNG if self.png else 0) | (FLAG_USER_DICT if self.user_digest else 0)

    def signal_bytes(self) -> bytes:
        s = self.signal
        if isinstance(s, PcmLayout) and s.band_chunks:
            assert self.round_chunks
            return b"".join(map(encode_varint, (BANDED_PCM_SIGNAL, s.channels, s.offset, s.band_chunks)))
        if isinstance(s, PcmLayout):
            return encode_varint(s.channels) + encode_varint(s.offset)
        if isinstance(s, ImageLayout):
            assert 1 <= s.channels <= 4 and (self.round_chunks or not s.band_chunks)
            return b"".join(map(encode_varint, (IMAGE_SIGNAL, s.width, s.channels, s.offset, s.band_chunks)))
        return b"\0"

    def to_bytes(self) -> bytes:
        mid = self.model_id.encode("ascii")
        assert len(mid) < 256 and len(self.model_digest) == (DIGEST_BYTES if mid else 0)
        assert 0 <= self.round_chunks <= MAX_ROUND_CHUNKS and (self.has_model or not (self.round_chunks or self.signal))
        assert len(self.dictionary_digest) in ((0, DIGEST_BYTES) if mid else (0,))
        dictionary = bytes([bool(self.dictionary_digest)]) + self.dictionary_digest if mid else b""
        envelope = envelope_bytes(self.png) if self.png else b""
        assert not self.png or isinstance(self.signal, ImageLayout)
        if self.user_digest:         # the user dictionary names the model (and its priming dictionary)
            assert len(self.user_digest) == DIGEST_BYTES and self.round_chunks and not mid
            model_fields = self.user_digest
        else:
            model_fields = bytes([len(mid)]) + mid + self.model_digest + dictionary
        return (MAGIC + bytes([VERSION, self.flags]) + encode_varint(self.chunk_size) + encode_varint(self.round_chunks)
                + self.signal_bytes() + model_fields
                + (encode_varint(len(envelope)) + envelope if self.png else b""))


@dataclass
class ChunkRecord:
    codec: int
    raw_size: int
    coded_size: int
    offset: int = 0           # where the payload starts in the archive (for listing)
    check: bytes = b""        # the group check that follows this record, if it ends a group (version 9 on)


@dataclass
class Trailer:
    chunk_count: int
    original_size: int
    checksum: bytes

    def to_bytes(self) -> bytes:
        return bytes([END]) + encode_varint(self.chunk_count) + encode_varint(self.original_size) + self.checksum


def chunk_record_bytes(codec: int, raw_size: int, payload: bytes) -> bytes:
    return bytes([codec]) + encode_varint(raw_size) + encode_varint(len(payload)) + payload


def archive_bytes(header: Header, chunks: list[tuple[int, bytes, bytes]]) -> bytes:
    """A whole archive from (codec, raw bytes, payload) per chunk, for callers that choose each chunk's coding
    themselves (the speed report, tests); the compressor writes the same records as it streams."""
    head = header.to_bytes()
    assert not band_chunks_of(header.signal)   # records in input order
    digest, groups = hashlib.sha256(head), GroupChecks(header.round_chunks, growing(header))
    records = []
    for codec, raw, payload in chunks:
        records.append(chunk_record_bytes(codec, len(raw), payload) + groups.add(raw))
        digest.update(raw)
    trailer = Trailer(len(chunks), sum(len(raw) for _, raw, _ in chunks), digest.digest()[:DIGEST_BYTES])
    return head + b"".join(records) + trailer.to_bytes()


def seek_table_bytes(frames: list[tuple[int, int]]) -> bytes:
    """The seek frame listing (frame bytes, frame size) for each frame before it."""
    body = (MAGIC + bytes([VERSION, FLAG_SEEK]) + encode_varint(len(frames))
            + b"".join(encode_varint(a) + encode_varint(b) for a, b in frames))
    return body + hashlib.sha256(body).digest()[:DIGEST_BYTES] + len(body).to_bytes(4, "little") + SEEK_MAGIC


def read_seek_table(fh: BinaryIO) -> list[tuple[int, int]] | None:
    """The seek table of a seekable stream, found from its end (None when it has none); fh is left anywhere."""
    end = fh.seek(0, io.SEEK_END)
    if end < 8 + len(MAGIC):
        return None
    fh.seek(end - 8)
    footer = fh.read(8)
    if footer[4:] != SEEK_MAGIC:
        return None
    size = int.from_bytes(footer[:4], "little")
    if size + DIGEST_BYTES + 8 > end:
        raise FormatError("corrupted archive (seek table footer)")
    fh.seek(end - 8 - DIGEST_BYTES - size)
    table = Reader(fh).seek_frame()
    if sum(a for a, _ in table) != end - 8 - DIGEST_BYTES - size:
        raise FormatError("corrupted archive (seek table does not add up to the frames before it)")
    return table


class Prefixed:
    """A stream that first returns `head`, then reads on from `fh`."""

    def __init__(self, head: bytes, fh: BinaryIO):
        self.head, self.fh = head, fh

    def read(self, n: int = -1) -> bytes:
        if self.head:
            out = self.head if n < 0 else self.head[:n]
            self.head = self.head[len(out):]
            return out if n < 0 or len(out) == n else out + self.fh.read(n - len(out))
        return self.fh.read(n)


def history_payload_bytes(prefix_start: int, prefix_size: int, frame: bytes) -> bytes:
    """A history zstd chunk's payload: where its dictionary lies in the history, then the zstd frame."""
    assert 0 < prefix_size <= MAX_HISTORY_PREFIX
    return encode_varint(prefix_start) + encode_varint(prefix_size) + frame


def parse_history_payload(payload: bytes, history_size: int, name: str) -> tuple[int, int, bytes]:
    """(prefix_start, prefix_size, frame) of a history zstd payload, the span checked against the `history_size`
    bytes the history holds."""
    r = Reader(io.BytesIO(payload))
    try:
        start = r.varint("history prefix start", history_size)
    except FormatError:
        raise FormatError(f"corrupted archive ({name}: its history span starts beyond the "
                          f"{history_size} bytes of history)") from None
    size = r.varint(f"{name}'s history prefix size", MAX_HISTORY_PREFIX)
    if size == 0 or start + size > history_size:
        raise FormatError(f"corrupted archive ({name}: history bytes {start}-{start + size} of {history_size})")
    return start, size, payload[r.pos:]


def model_payload_fits(raw_size: int, coded_size: int) -> bool:
    """Whether a model payload of coded_size bytes may code raw_size bytes (version 9 on): shorter than the chunk,
    and at most MAX_MODEL_RATIO bytes a byte -- the rule the reader checks and the encoder keeps."""
    return 0 < coded_size < raw_size <= MAX_MODEL_RATIO * coded_size


def band_chunks_of(signal: PcmLayout | ImageLayout | None) -> int:
    """The chunks per band of an input whose records are in band order (an image's, or format 13's audio); 0: in
    input order."""
    return signal.band_chunks if isinstance(signal, (PcmLayout, ImageLayout)) else 0


def growing(header: Header, version: int = VERSION) -> bool:
    """Whether the header's rounds grow (`round_sizes`): version 10 on, with a shared history, records not banded."""
    return version >= 10 and header.round_chunks > 0 and not band_chunks_of(header.signal)


def round_sizes(round_chunks: int, grows: bool) -> Iterator[int]:
    """Chunks in each round, in record order (round_chunks > 0): 1, 1, 2, 4, ... up to round_chunks, then
    round_chunks, where rounds grow (version 10); round_chunks each otherwise."""
    k = 0
    while True:
        yield min(round_chunks, 1 << max(k - 1, 0)) if grows and k <= 11 else round_chunks
        k += 1


class GroupChecks:
    """Where the groups end (the fewest whole rounds that hold CHECK_GROUP records, or CHECK_GROUP records
    without a shared history: a check costs at most 4 bytes per 64 chunks and a small file none), and the
    running check of the current one. The encoder stores what `add` returns after each record; the decoder
    compares it with what it read; the reader only asks `ends_group` to know where a check follows."""

    def __init__(self, round_chunks: int, grows: bool = False):
        self._rounds = round_sizes(round_chunks, grows) if round_chunks else None
        self._round_end = next(self._rounds) if self._rounds else CHECK_GROUP   # records up to the round's end
        self.count = self.first = 0            # records so far; the first record of the current group
        self.digest = hashlib.sha256()

    def ends_group(self) -> bool:
        """Whether the next record (record `count`) ends a group; then moves on to the record after it."""
        self.count += 1
        if self.count < self._round_end:
            return False
        self._round_end += next(self._rounds) if self._rounds else CHECK_GROUP
        if self.count - self.first < CHECK_GROUP:
            return False
        self.first = self.count
        return True

    def add(self, data: bytes) -> bytes:
        """The next record's decoded bytes in: its group check if it ends a group, else b""."""
        self.digest.update(data)
        if not self.ends_group():
            return b""
        check, self.digest = self.digest.digest()[:GROUP_CHECK_BYTES], hashlib.sha256()
        return check


def _article(what: str) -> str:
    """'chunk 3' as it is, 'the header' for a field: how a truncation message names where it ends."""
    return what if re.fullmatch(r"chunk \d+", what) else f"the {what}"


class Reader:
    """Parses an archive from a binary stream, checking every field as it goes."""

    def __init__(self, fh: BinaryIO, prefix: bytes = b""):
        """`prefix`: the frame's first bytes, already read from fh (`next_frame`)."""
        self.fh = Prefixed(prefix, fh) if prefix else fh
        self.pos = 0
        self.seek_table: list[tuple[int, int]] | None = None   # (frame bytes, frame size) each, if one ended it
        self.version = VERSION
        self.header_bytes = b""   # the header as read: version 9's checksum covers it
        self._kept: list[bytes] | None = None

    def read(self, n: int, what: str) -> bytes:
        # a big payload is read a piece at a time: memory follows the bytes present, not the size declared
        data = self.fh.read(min(n, READ_PIECE))
        if len(data) == READ_PIECE < n:
            parts, got = [data], len(data)
            while got < n and (piece := self.fh.read(min(n - got, READ_PIECE))):
                parts.append(piece)
                got += len(piece)
            data = b"".join(parts)
        self.pos += len(data)
        if self._kept is not None:
            self._kept.append(data)
        if len(data) != n:
            raise FormatError(f"truncated archive (ends inside {_article(what)})")
        return data

    def varint(self, what: str, limit: int) -> int:
        n = shift = 0
        for _ in range(10):
            b = self.read(1, what)[0]
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                if b == 0 and shift > 7:
                    raise FormatError(f"corrupted archive (overlong {what})")
                if n > limit:
                    raise FormatError(f"corrupted archive ({what} {n} exceeds {limit})")
                return n
        raise FormatError(f"corrupted archive (overlong {what})")

    def header(self) -> Header:
        self._kept = []
        try:
            header = self._header()
        finally:
            self.header_bytes, self._kept = b"".join(self._kept), None
        return header

    def _header(self) -> Header:
        magic = self.fh.read(4)
        self.pos += len(magic)
        self._kept.append(magic)
        if not magic:
            raise FormatError("empty file, not a bytezip archive")
        if magic != MAGIC:
            if MAGIC.startswith(magic):
                raise FormatError("truncated archive (ends inside the header)")
            raise FormatError("not a bytezip archive (bad magic)")
        version, flags = self.read(2, "header")
        if version not in READ_VERSIONS:
            raise FormatError(f"unsupported archive format version {version} (this bytezip reads versions "
                              f"{', '.join(map(str, READ_VERSIONS))})")
        self.version = version
        if flags & ~(FLAG_PNG | (FLAG_USER_DICT if version >= 9 else 0)):
            raise FormatError(f"corrupted archive (unknown flags {flags:#04x})")
        chunk_size = self.varint("chunk size", MAX_CHUNK_SIZE)
        if chunk_size == 0:
            raise FormatError("corrupted archive (chunk size 0)")
        round_chunks = self.varint("round size", MAX_ROUND_CHUNKS)
        signal = self._signal(round_chunks)
        user = b""
        if flags & FLAG_USER_DICT:   # the user dictionary names the model: no model fields
            if not round_chunks:
                raise FormatError("corrupted archive (a user dictionary without a shared history)")
            if chunk_size > MAX_MODEL_CHUNK:
                raise FormatError(f"corrupted archive (chunk size {chunk_size} with a model; at most "
                                  f"{MAX_MODEL_CHUNK})")
            user = self.read(DIGEST_BYTES, "user dictionary digest")
        mid = self.read(self.read(1, "header")[0], "model id") if not user else b""
        if mid and not MODEL_NAME.fullmatch(mid.decode("latin-1")):  # printed in messages, looked up by name
            raise FormatError("corrupted archive (the model id is not a plain model name)")
        if mid and chunk_size > MAX_MODEL_CHUNK:
            raise FormatError(f"corrupted archive (chunk size {chunk_size} with a model; at most {MAX_MODEL_CHUNK})")
        if round_chunks and not (mid or user):
            raise FormatError("corrupted archive (shared history without a model)")
        if signal and not (mid or user):
            raise FormatError("corrupted archive (signal layout without a model)")
        digest = self.read(DIGEST_BYTES, "model digest") if mid else b""
        has_dictionary = self.read(1, "header")[0] if mid else 0
        if has_dictionary > 1:
            raise FormatError(f"corrupted archive (dictionary field {has_dictionary})")
        dictionary = self.read(DIGEST_BYTES, "dictionary digest") if has_dictionary else b""
        if band_chunks_of(signal):
            # banded output is held until its last round: only what an encoder holds whole is banded
            limit = MAX_PIXELS if flags & FLAG_PNG else MAX_CHUNK_SIZE
            if round_chunks * signal.band_chunks * chunk_size > limit:
                raise FormatError(f"corrupted archive ({round_chunks} bands of {signal.band_chunks} chunks of "
                                  f"{chunk_size} bytes exceed {limit} bytes)")
        png = None
        if flags & FLAG_PNG:
            png = parse_envelope(self.read(self.varint("PNG envelope size", MAX_ENVELOPE), "PNG envelope"))
            if not (isinstance(signal, ImageLayout) and (signal.width, signal.channels, signal.offset)
                    == (png.width, png.channels, 0)):
                raise FormatError("corrupted archive (a PNG envelope without its image layout)")
        return Header(chunk_size, mid.decode("ascii"), digest, round_chunks, signal, dictionary, png, user)

    def _signal(self, round_chunks: int) -> PcmLayout | ImageLayout | None:
        kind = self.varint("signal kind", IMAGE_SIGNAL if self.version < 13 else BANDED_PCM_SIGNAL)
        if kind in (1, 2):
            return PcmLayout(kind, self.varint("audio offset", MAX_PCM_OFFSET))
        if kind == BANDED_PCM_SIGNAL:
            channels = self.varint("audio channels", 2)
            offset = self.varint("audio offset", MAX_PCM_OFFSET)
            bands = self.varint("band chunks", 1 << 40)
            if not channels or not bands or not round_chunks:
                raise FormatError(f"corrupted archive (banded audio layout: {channels} channels, {bands} band chunks, "
                                  f"{round_chunks} chunks a round)")
            return PcmLayout(channels, offset, bands)
        if kind == IMAGE_SIGNAL:
            width = self.varint("image width", MAX_IMAGE_WIDTH)
            channels = self.varint("image channels", 4)
            offset = self.varint("image offset", MAX_PCM_OFFSET)
            bands = self.varint("band chunks", 1 << 40)
            if not width or not channels or (bands and not round_chunks):
                raise FormatError(f"corrupted archive (image layout {width} x {channels}, {bands} band chunks)")
            return ImageLayout(width, channels, offset, bands)
        return None

    def records(self, header: Header) -> Iterator[tuple[ChunkRecord, bytes | None]]:
        """Yields (record, payload) per chunk, a record that ends a group (version 9 on) with its group check;
        after the loop `self.trailer` holds the checked end record."""
        count = total = 0
        last_short = False
        groups = GroupChecks(header.round_chunks, growing(header, self.version)) if self.version >= 9 else None
        bands = band_chunks_of(header.signal)
        banded_limit = header.round_chunks * (bands + 1) if bands else 1 << 62   # the band rule's size bound
        while True:
            codec = self.read(1, "chunk table")[0]
            if codec == END:
                break
            if codec not in CODEC_NAMES:
                raise FormatError(f"corrupted archive (unknown codec {codec} in chunk {count})")
            if codec in MODEL_CODECS and not header.has_model:
                raise FormatError(f"corrupted archive ({CODEC_NAMES[codec]} chunk {count} in an archive made "
                                  f"without a model)")
            if codec == HISTORY_ZSTD and (self.version < 11 or not header.round_chunks):
                raise FormatError(f"corrupted archive (history zstd chunk {count} in "
                                  + (f"a version {self.version} archive)" if self.version < 11
                                     else "an archive without a shared history)"))
            if last_short:
                raise FormatError(f"corrupted archive (chunk {count - 1} is short but not last)")
            if count >= banded_limit:
                raise FormatError(f"corrupted archive (chunk {count} beyond the bands and one round)")
            raw = self.varint("chunk size", header.chunk_size)
            coded = self.varint("coded chunk size", raw)
            if raw == 0 or (codec == RAW and coded != raw) or (codec != RAW and coded == 0):
                raise FormatError(f"corrupted archive (chunk {count}: {CODEC_NAMES[codec]} {raw} -> {coded} bytes)")
            if codec in MODEL_CODECS and self.version >= 9 and raw > MAX_MODEL_RATIO * coded:
                raise FormatError(f"corrupted archive (chunk {count}: {CODEC_NAMES[codec]} {raw} -> {coded} bytes; "
                                  f"a model payload codes at most {MAX_MODEL_RATIO} bytes a byte)")
            last_short = raw < header.chunk_size
            rec = ChunkRecord(codec, raw, coded, self.pos)
            payload = self.read(coded, f"chunk {count}")
            if codec in MODEL_CODECS and payload[-1] == 0:
                raise FormatError(f"corrupted archive (chunk {count}: a {CODEC_NAMES[codec]} payload ends in a zero "
                                  f"byte, which every encoder drops)")
            if groups and groups.ends_group():
                rec.check = self.read(GROUP_CHECK_BYTES, f"group check after chunk {count}")
            yield rec, payload
            count += 1
            total += raw
        n = self.varint("chunk count", 1 << 40)
        size = self.varint("original size", 1 << 60)
        checksum = self.read(DIGEST_BYTES, "checksum")
        if n != count or size != total:
            raise FormatError(f"corrupted archive (end record says {n} chunks / {size} bytes, "
                              f"found {count} / {total})")
        if header.round_chunks and (isinstance(header.signal, ImageLayout) or band_chunks_of(header.signal)):
            self._check_bands(header.signal.band_chunks, size, header)
        self.trailer = Trailer(n, size, checksum)

    def next_frame(self) -> "Reader | None":
        """After the end record: a Reader for the frame that follows (another archive, concatenated), or None at
        the end of the stream, or after a seek table (then in `seek_table`); anything else is corruption."""
        magic = self.fh.read(len(MAGIC))
        if not magic:
            return None
        if magic != MAGIC:
            raise FormatError("corrupted archive (data after the end record)" if MAGIC[:len(magic)] != magic
                              else "truncated archive (ends inside the next frame's header)")
        head = magic + self.fh.read(2)
        if len(head) == 6 and head[4] >= 10 and head[5] == FLAG_SEEK:
            self.seek_table = Reader(self.fh, head).seek_frame()
            return None
        return Reader(self.fh, head)

    def seek_frame(self) -> list[tuple[int, int]]:
        """The seek table (a stream's last frame): (frame bytes, frame size) per frame; nothing may follow."""
        self._kept = []
        self.read(len(MAGIC) + 2, "seek table")
        n = self.varint("frame count", MAX_FRAMES)
        table = [(self.varint("frame bytes", 1 << 60), self.varint("frame size", 1 << 60)) for _ in range(n)]
        body = b"".join(self._kept)
        self._kept = None
        if self.read(DIGEST_BYTES, "seek table") != hashlib.sha256(body).digest()[:DIGEST_BYTES]:
            raise FormatError("corrupted archive (seek table checksum)")
        if self.read(8, "seek table") != len(body).to_bytes(4, "little") + SEEK_MAGIC or self.fh.read(1):
            raise FormatError("corrupted archive (seek table footer)")
        return table

    def _check_bands(self, bands: int, size: int, header: Header):
        """A band count is the one the encoder derives from the size (version 8's checksum does not
        cover the fields that order the output, so the reader checks them): size // chunk_size // round_chunks,
        and in version 8, whose encoder banded every image it held whole (up to MAX_CHUNK_SIZE bytes, or a
        PNG's pixels) with at least two chunks a band, no band count only where that rule gave none."""
        derived = size // header.chunk_size // header.round_chunks
        whole = size <= MAX_CHUNK_SIZE or header.png is not None      # what the encoder held in memory
        expected = derived if bands or (self.version < 9 and whole and derived >= 2) else 0
        if bands != expected:
            raise FormatError(f"corrupted archive ({bands} band chunks for {size} bytes in rounds of "
                              f"{header.round_chunks})")
