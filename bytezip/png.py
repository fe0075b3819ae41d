"""PNG files coded as their pixels, and rebuilt byte for byte.

A PNG's image data is deflate over filtered rows: to a byte model it is noise (8 bits per byte), while its
pixels are what the pixel predictor (`bytezip.image`) codes well. `split` takes a PNG apart into its pixels
and an `Envelope`, everything else needed to rebuild the exact file: the chunks before and after the image
data, the IDAT chunk sizes, each row's filter type and the zlib settings that reproduce the compressed
stream. The encoder finds those settings by trying zlib's (level, memLevel, strategy) and keeps a PNG only
when `join` rebuilds it exactly; anything else (16-bit or palette images, interlacing, an encoder other
than zlib) is coded as the file it is.

Rebuilding needs a zlib whose deflate output is zlib's own (every zlib release since 1.2 agrees; zlib-ng
does not): the envelope holds the file's digest, and a decoder whose rebuilt file differs says so.
"""
from __future__ import annotations

import hashlib
import io
import struct
import zlib
from dataclasses import dataclass
# numpy is imported by the functions that use it: the format reads these layouts, and the command line's
# --help and --version, which import the format, then load no numpy


SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}        # 8-bit colour types (grey, RGB, grey+alpha, RGBA) -> samples per pixel
MODES = {0: "L", 2: "RGB", 4: "LA", 6: "RGBA"}   # ... and Pillow's names for them
LEVELS = (9, 6, 8, 7, 5, 4, 3, 2, 1)       # zlib settings tried, likeliest first
MEM_LEVELS = (9, 8)
STRATEGIES = (1, 0)                         # Z_FILTERED (libpng's default for filtered rows), Z_DEFAULT_STRATEGY
PROBE_BYTES = 1 << 16                       # a setting is dropped once its output leaves the stream's
MAX_PIXELS = 1 << 26                        # bytes of pixels in a PNG coded as pixels
MAX_ENVELOPE = 1 << 24                      # bytes of an envelope, compressed or not
DIGEST_BYTES = 8


@dataclass(frozen=True)
class Envelope:
    """What a PNG holds besides its pixels (width x height pixels of `channels` 8-bit samples)."""
    width: int
    height: int
    channels: int
    before: bytes                  # the file up to the first IDAT chunk (signature, IHDR, ...)
    after: bytes                   # the file from the end of the last IDAT chunk (IEND, ...)
    idat_sizes: tuple[int, ...]    # data bytes of each IDAT chunk
    zlib_settings: tuple[int, int, int, int]    # level, wbits, memLevel, strategy
    filters: bytes                 # each row's filter type (0-4)
    size: int                      # bytes of the file
    digest: bytes                  # SHA-256 prefix of the file

    @property
    def pixel_bytes(self) -> int:
        return self.width * self.height * self.channels


def valid_zlib_settings(level: int, wbits: int, mem_level: int, strategy: int) -> bool:
    """Whether zlib accepts these (level, wbits, memLevel, strategy)."""
    return level <= 9 and 9 <= wbits <= 15 and 1 <= mem_level <= 9 and strategy <= 4


def _chunks(data: bytes):
    """(type, start, end of the chunk's data) for each chunk of a PNG; stops at IEND."""
    pos = len(SIGNATURE)
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 8 + length
        if end + 4 > len(data):
            return
        yield kind, pos, end
        pos = end + 4
        if kind == b"IEND":
            return


def split(data: bytes) -> tuple[Envelope, bytes] | None:
    """(envelope, pixels) of an 8-bit, non-interlaced, zlib-written PNG that `join` rebuilds exactly; else None."""
    import numpy as np
    if not data.startswith(SIGNATURE) or data[12:16] != b"IHDR" or len(data) < 33:
        return None
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    channels = CHANNELS.get(colour)
    if depth != 8 or channels is None or interlace or not width or width * height * channels > MAX_PIXELS:
        return None
    idats = [(s, e) for kind, s, e in _chunks(data) if kind == b"IDAT"]
    if not idats or any(s != e0 + 4 for (_, e0), (s, _) in zip(idats, idats[1:])):
        return None        # the IDAT chunks must follow one another
    stream = b"".join(data[s + 8:e] for s, e in idats)
    stride = width * channels
    try:   # no more than the image's rows: a deflate bomb stops there
        inflate = zlib.decompressobj()
        rows = inflate.decompress(stream, height * (stride + 1) + 1)
    except zlib.error:
        return None
    if len(rows) != height * (stride + 1) or not inflate.eof or inflate.unused_data:
        return None
    lines = np.frombuffer(rows, dtype=np.uint8).reshape(height, stride + 1)
    filters = lines[:, 0].tobytes()
    if max(filters) > 4:
        return None
    pixels = _pixels(data, MODES[colour])
    if pixels is None:
        return None
    settings = _zlib_settings(rows, stream)
    if settings is None:
        return None
    env = Envelope(width, height, channels, data[:idats[0][0]], data[idats[-1][1] + 4:],
                   tuple(e - s - 8 for s, e in idats), settings, filters, len(data), digest(data))
    # the settings deflate `rows` to `stream` (checked by the search): what remains is filtering and chunking
    exact = _filter(pixels, env) == rows and _file(env, stream) == data
    return (env, pixels) if exact else None


def join(env: Envelope, pixels: bytes) -> bytes:
    """The PNG file of `pixels` as the envelope describes it."""
    level, wbits, mem_level, strategy = env.zlib_settings
    c = zlib.compressobj(level, zlib.DEFLATED, wbits, mem_level, strategy)
    return _file(env, c.compress(_filter(pixels, env)) + c.flush())


def _file(env: Envelope, stream: bytes) -> bytes:
    """The PNG file whose IDAT chunks hold `stream`."""
    out, pos = [env.before], 0
    for n in env.idat_sizes:
        piece = b"IDAT" + stream[pos:pos + n]
        out.append(struct.pack(">I", n) + piece + struct.pack(">I", zlib.crc32(piece)))
        pos += n
    out.append(env.after)
    return b"".join(out)


def _pixels(data: bytes, mode: str) -> bytes | None:
    """The decoded samples, as stored (Pillow unfilters; `join` checks the result against the file)."""
    from PIL import Image
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.tobytes() if im.mode == mode else None
    except Exception:      # whatever Pillow cannot read is coded as the file it is
        return None


def digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()[:DIGEST_BYTES]


def _zlib_settings(rows: bytes, stream: bytes) -> tuple[int, int, int, int] | None:
    """The (level, wbits, memLevel, strategy) whose zlib stream of `rows` is `stream`, or None."""
    if len(stream) < 2 or stream[0] & 0x0F != 8:
        return None
    wbits = (stream[0] >> 4) + 8
    for level in LEVELS:
        for mem_level in MEM_LEVELS:
            for strategy in STRATEGIES:
                c = zlib.compressobj(level, zlib.DEFLATED, wbits, mem_level, strategy)
                out, ok = bytearray(), True
                for i in range(0, len(rows), PROBE_BYTES):
                    out += c.compress(rows[i:i + PROBE_BYTES])
                    if out != stream[:len(out)]:
                        ok = False
                        break
                if ok and out + c.flush() == stream:
                    return level, wbits, mem_level, strategy
    return None


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    import numpy as np
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def _filter(pixels: bytes, env: Envelope) -> bytes:
    """The filtered rows (filter byte + filtered samples) of `pixels` with the envelope's filter types."""
    import numpy as np
    bpp, stride = env.channels, env.width * env.channels
    x = np.frombuffer(pixels, dtype=np.uint8).reshape(env.height, stride).astype(np.int16)
    a = np.zeros_like(x)
    a[:, bpp:] = x[:, :-bpp]                     # the sample one pixel to the left
    b = np.zeros_like(x)
    b[1:] = x[:-1]                               # the sample above
    c = np.zeros_like(x)
    c[1:, bpp:] = x[:-1, :-bpp]                  # above and to the left
    predictions = np.stack([np.zeros_like(x), a, b, (a + b) // 2, _paeth(a, b, c)])   # [5, height, stride]
    kind = np.frombuffer(env.filters, dtype=np.uint8)
    filtered = (x - predictions[kind, np.arange(env.height)]).astype(np.uint8)
    return np.concatenate([kind[:, None], filtered], 1).tobytes()
