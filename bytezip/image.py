"""8-bit raster images: where the pixels lie (the predictor of their bytes is `bytezip.predictors.image`).

The row above must be decodable when a byte is: the codec codes an image's chunks band by band
(`coded_index`: lane i of round r holds chunk r of band i), so the chunk above a chunk is in an earlier round,
in the shared history.

Where the pixels are (`ImageLayout`) is decided once per input by the encoder (`detect_layout`: a binary
PPM/PGM header, or raw pixels recognised by their row-to-row correlation) and recorded in the archive header.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
# numpy is imported by the functions that use it: the format reads these layouts, and the command line's
# --help and --version, which import the format, then load no numpy


DETECT_BYTES = 1 << 18         # raw pixels are recognised from this much of the input's start ...
DETECT_MIN_CORRELATION = 0.3   # ... when differences a row stride apart correlate this well ...
DETECT_MIN_ROW_CORRELATION = 0.5   # ... and so do the bytes
MIN_WIDTH = 8                  # pixels per row, at least ...
MIN_ROW = 64                   # ... and bytes (tables of 24- or 48-byte records are not images)
ROWS_APART = 8                 # the best lag may be this many rows
_PNM = re.compile(rb"P([56])\s+(?:#[^\n]*\n\s*)*(\d+)\s+(?:#[^\n]*\n\s*)*(\d+)\s+(?:#[^\n]*\n\s*)*255\s")


@dataclass(frozen=True)
class ImageLayout:
    """Rows of `width` pixels of `channels` interleaved 8-bit samples from byte `offset` on; `band_chunks`: the
    chunks per band when the codec orders chunks band by band (0 until it decides)."""
    width: int
    channels: int               # 1 to 4
    offset: int = 0
    band_chunks: int = 0

    @property
    def stride(self) -> int:
        return self.width * self.channels

    def banded(self, band_chunks: int) -> "ImageLayout":
        return replace(self, band_chunks=band_chunks)


def detect_layout(head: bytes) -> ImageLayout | None:
    """The pixel layout of an input from its first bytes: a binary PPM/PGM header, or raw pixels."""
    m = _PNM.match(head)
    if m:
        return ImageLayout(int(m.group(2)), 3 if m.group(1) == b"6" else 1, m.end())
    return raw_layout(head[:DETECT_BYTES])


def raw_layout(head: bytes) -> ImageLayout | None:
    """Raw pixels: the row stride is the lag (of at least MIN_WIDTH pixels) at which the byte-to-byte differences
    correlate best (differences, so that smooth or dark regions do not make every short lag look alike; or a
    fraction of it, up to 1/ROWS_APART, that correlates almost as well: a pattern repeating down the rows makes
    a lag of several rows look as good), the pixel size the lag 1-4 dividing it at which the bytes correlate best
    (3 where every byte of the head comes three times over: a grey image stored as RGB); accepted when the
    differences and the bytes correlate strongly. Measured on the 16 train images: every stride right; on six
    photos of Debian's mate-backgrounds two wrong (a diagonal texture one pixel short, a wood grain two rows and
    four pixels). Tables in executables pass too (50 of 500 system binaries); the mixer then weighs the
    predictor down (64 KB of libsqlite3: 0.6% smaller with it)."""
    import numpy as np
    n = len(head)
    if n < 4096:
        return None
    x = np.frombuffer(head, dtype=np.uint8).astype(np.float64)
    cov, diff_cov = _autocorrelation(x), _autocorrelation(np.diff(x, prepend=x[0]))
    if cov is None or diff_cov is None or len(cov) <= MIN_WIDTH * 4:
        return None
    best = MIN_ROW + int(np.argmax(diff_cov[MIN_ROW:]))
    stride = min([best] + [best // k for k in range(2, ROWS_APART + 1) if best % k == 0 and best // k >= MIN_ROW
                           and diff_cov[best // k] >= 0.97 * diff_cov[best]])
    channels = max((c for c in (1, 2, 3, 4) if stride % c == 0), key=lambda c: cov[c])
    if channels == 1 and stride % 3 == 0 and _grey_triplets(head):
        channels = 3                # a grey image stored as RGB: its pixel predictor then codes G and B ~free
    if (stride // channels < MIN_WIDTH or diff_cov[stride] < DETECT_MIN_CORRELATION
            or cov[stride] < DETECT_MIN_ROW_CORRELATION):
        return None
    return ImageLayout(stride // channels, channels)


def _grey_triplets(head: bytes) -> bool:
    """Whether the bytes come in runs of three equal ones from the start (R = G = B), as far as whole pixels go."""
    import numpy as np
    x = np.frombuffer(head, dtype=np.uint8)[:len(head) // 3 * 3].reshape(-1, 3)
    return bool((x[:, 0] == x[:, 1]).all() and (x[:, 0] == x[:, 2]).all())


def _autocorrelation(x: np.ndarray) -> np.ndarray | None:
    """Normalised autocovariance of x at lags 0 .. len(x)/4 - 1 (None for a constant x)."""
    import numpy as np
    n = len(x)
    x = x - x.mean()
    var = float((x * x).mean())
    if var < 1e-6:
        return None
    f = np.fft.rfft(x, 2 * n)
    return np.fft.irfft(f * np.conj(f))[:n // 4] / (n - np.arange(n // 4)) / var


def coded_index(j: np.ndarray, round_chunks: int, band_chunks: int) -> np.ndarray:
    """Where chunk j of the input is coded: the first round_chunks x band_chunks chunks as round_chunks bands
    of band_chunks chunks, lane i of round r holding chunk r of band i; the rest (and all, when band_chunks is
    0) in order."""
    import numpy as np
    j = np.asarray(j, dtype=np.int64)
    if not band_chunks:
        return j
    return np.where(j < round_chunks * band_chunks, (j % band_chunks) * round_chunks + j // band_chunks, j)


def input_index(k: np.ndarray, round_chunks: int, band_chunks: int) -> np.ndarray:
    """Which chunk of the input record k holds: the inverse of `coded_index`."""
    import numpy as np
    k = np.asarray(k, dtype=np.int64)
    if not band_chunks:
        return k
    return np.where(k < round_chunks * band_chunks, (k % round_chunks) * band_chunks + k // round_chunks, k)
