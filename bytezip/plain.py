"""Chunks that need no model: raw, zstd (level 19, magicless frames), lzma (xz -9e's LZMA2, raw streams) and
history zstd (zstd with a span of the shared history as its dictionary), and the choice of the smallest
candidate for a chunk.

Why a module of its own: these codecs are the format's fallbacks, used with or without a model, by the
encoder, the decoder, the whole-input (solid) archive and the tests that build archives by hand; they need
neither torch nor the model.
"""
from __future__ import annotations

import functools
import lzma
import threading

import zstandard

from . import format as fmt
from .format import FormatError

ZSTD_LEVEL = 19


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


def lzma_compress(chunk: bytes) -> bytes:
    return lzma.compress(chunk, format=lzma.FORMAT_RAW, filters=lzma_filters(len(chunk)))


def lzma_decompress(payload: bytes, raw_size: int, name: str = "lzma chunk") -> bytes:
    d = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=lzma_filters(raw_size))
    try:
        out = d.decompress(payload, max_length=raw_size)
    except lzma.LZMAError as e:
        raise FormatError(f"corrupted archive ({name}: {e})") from None
    if len(out) != raw_size or not d.eof or d.unused_data:
        raise FormatError(f"corrupted archive ({name} has the wrong size)")
    return out


def zstd_compress(chunk: bytes) -> bytes:
    return _zstd_compressor(len(chunk), threading.get_ident()).compress(chunk)


def history_zstd_compress(chunk: bytes, prefix_start: int, prefix: bytes) -> bytes:
    """A history zstd payload (format 11): the chunk coded at level 19 with the history's bytes `prefix`, found at
    `prefix_start`, as a raw-content dictionary."""
    params = zstandard.ZstdCompressionParameters.from_level(
        ZSTD_LEVEL, source_size=len(chunk), dict_size=len(prefix), format=zstandard.FORMAT_ZSTD1_MAGICLESS,
        write_content_size=0, write_checksum=0, write_dict_id=0)
    d = zstandard.ZstdCompressionDict(prefix, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    frame = zstandard.ZstdCompressor(dict_data=d, compression_params=params).compress(chunk)
    return fmt.history_payload_bytes(prefix_start, len(prefix), frame)


def history_zstd_decompress(payload: bytes, raw_size: int, history: bytes | memoryview,
                            name: str = "history zstd chunk") -> bytes:
    """A history zstd chunk from its payload and the shared history's bytes as its round began."""
    start, size, frame = fmt.parse_history_payload(payload, len(history), name)
    d = zstandard.ZstdCompressionDict(bytes(history[start:start + size]), dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    return zstd_decompress(frame, raw_size, name, d)


def zstd_decompress(payload: bytes, raw_size: int, name: str = "zstd chunk",
                    dictionary: zstandard.ZstdCompressionDict | None = None) -> bytes:
    try:
        # our frames declare no content size; one that does must say raw_size, since zstandard allocates
        # whatever a frame declares (up to exabytes), whatever max_output_size says
        declared = zstandard.get_frame_parameters(payload, format=zstandard.FORMAT_ZSTD1_MAGICLESS).content_size
        if declared not in (zstandard.CONTENTSIZE_UNKNOWN, raw_size):
            raise FormatError(f"corrupted archive ({name} declares {declared} bytes, not {raw_size})")
        out = zstandard.ZstdDecompressor(dict_data=dictionary, format=zstandard.FORMAT_ZSTD1_MAGICLESS).decompress(
            payload, max_output_size=raw_size)
    except zstandard.ZstdError as e:
        raise FormatError(f"corrupted archive ({name}: {e})") from None
    if len(out) != raw_size:
        raise FormatError(f"corrupted archive ({name} has the wrong size)")
    return out


def plain_decode(codec: int, payload: bytes, raw_size: int, index: int, history: bytes | memoryview = b"") -> bytes:
    """Chunk `index` when it needs no model: raw, zstd, lzma, or history zstd over `history` (the shared
    history's bytes as the chunk's round began)."""
    if codec == fmt.RAW:
        return payload
    if codec == fmt.HISTORY_ZSTD:
        return history_zstd_decompress(payload, raw_size, history, f"history zstd chunk {index}")
    decompress = zstd_decompress if codec == fmt.ZSTD else lzma_decompress
    return decompress(payload, raw_size, f"{fmt.CODEC_NAMES[codec]} chunk {index}")


def smallest(chunk: bytes, neural: bytes | None, mixed: bytes | None,
             lap=lambda part: None, history_span: tuple[int, bytes] | None = None) -> tuple[int, bytes]:
    """(codec, payload) of the smallest of zstd, lzma, history zstd (with `history_span`, (start, bytes) of the
    history that the chunk repeats), neural and mixed (their payloads, if any, a model payload only within the
    format's MAX_MODEL_RATIO), else raw. `lap(part)`, when given, is called after the zstd candidates and
    after the lzma one (a stopwatch: `neural.Laps`)."""
    best = (fmt.RAW, chunk)
    candidates = [(fmt.ZSTD, zstd_compress(chunk))]
    if history_span is not None:
        candidates.append((fmt.HISTORY_ZSTD, history_zstd_compress(chunk, *history_span)))
    lap("zstd")
    candidates += [(fmt.LZMA, lzma_compress(chunk)), (fmt.NEURAL, neural), (fmt.MIXED, mixed)]
    lap("lzma")
    for codec, payload in candidates:
        if (payload is not None and 0 < len(payload) < len(best[1])
                and (codec not in fmt.MODEL_CODECS or fmt.model_payload_fits(len(chunk), len(payload)))):
            best = (codec, payload)
    return best
