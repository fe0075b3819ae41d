"""16-bit PCM audio: where the samples lie (the predictor of their bytes is `bytezip.predictors.pcm`).

Where the samples are (`PcmLayout`) is decided once per input by the encoder (`detect_layout`: a WAV
header, or raw samples recognised by how well they predict) and recorded in the archive header.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, replace
# numpy is imported by the functions that use it: the format reads these layouts, and the command line's
# --help and --version, which import the format, then load no numpy


DETECT_BYTES = 1 << 18         # raw samples are recognised from this much of the input's start
DETECT_MAX_BITS = 12           # ... when the best layout's residuals cost under this per sample ...
DETECT_MARGIN_BITS = 2         # ... and this much less than the worst layout's


@dataclass(frozen=True)
class PcmLayout:
    """Interleaved little-endian 16-bit samples from byte `offset` on (to the end of the input); `band_chunks`:
    the chunks per band when the codec orders chunks band by band (format 13, as an image's: each chunk's
    predecessor is then in an earlier round, where its predictor starts from; 0 until it decides)."""
    channels: int              # 1 or 2
    offset: int = 0            # bytes before the first sample (a WAV header)
    band_chunks: int = 0

    @property
    def frame(self) -> int:
        return 2 * self.channels

    def banded(self, band_chunks: int) -> "PcmLayout":
        return replace(self, band_chunks=band_chunks)


def detect_layout(head: bytes) -> PcmLayout | None:
    """The sample layout of an input from its first bytes: a 16-bit PCM WAV header, or raw samples."""
    return wav_layout(head) or raw_layout(head[:DETECT_BYTES])


def wav_layout(head: bytes) -> PcmLayout | None:
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, fmt = 12, None
    while pos + 8 <= len(head):
        cid, size = head[pos:pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        if cid == b"fmt " and size >= 16 and pos + 24 <= len(head):
            tag, channels, _, _, _, bits = struct.unpack_from("<HHIIHH", head, pos + 8)
            if tag == 0xFFFE and size >= 40 and pos + 34 <= len(head):   # WAVE_FORMAT_EXTENSIBLE: its sub-format
                tag = struct.unpack_from("<H", head, pos + 32)[0]
            fmt = (tag, channels, bits)
        elif cid == b"data":
            ok = fmt is not None and fmt[0] == 1 and fmt[1] in (1, 2) and fmt[2] == 16
            return PcmLayout(fmt[1], pos + 8) if ok else None
        pos += 8 + size + (size & 1)
    return None


def raw_layout(head: bytes) -> PcmLayout | None:
    """Raw samples: the layout (mono/stereo, byte phase) under which prediction costs the fewest bits, when
    it costs far fewer than under the worst layout (bytes that are not 16-bit audio look alike under all)."""
    import numpy as np
    costs = {}
    for channels in (1, 2):
        for phase in range(2 * channels):
            n = (len(head) - phase) // (2 * channels)
            if n < 64:
                return None
            x = np.frombuffer(head, dtype="<i2", count=n * channels, offset=phase).astype(np.int64)
            costs[PcmLayout(channels, phase)] = _residual_bits(x.reshape(n, channels))
    best = min(costs, key=costs.get)
    if costs[best] < DETECT_MAX_BITS and costs[best] + DETECT_MARGIN_BITS < max(costs.values()):
        return best
    return None


def _residual_bits(x: np.ndarray) -> float:
    """About the bits per sample of coding x [n, channels] with the best order-1/2 predictor per channel (and,
    for a second channel, the first one's residual added): log2 of the mean |residual|, over channels."""
    import numpy as np
    d1 = np.diff(x, axis=0)[1:]
    d2 = np.diff(x, n=2, axis=0)
    residuals = [d1, d2]
    if x.shape[1] == 2:
        residuals += [d1[:, 1:] - d1[:, :1], d2[:, 1:] - d2[:, :1]]
    first = min(np.abs(r[:, 0]).mean() for r in residuals[:2])
    others = [min(np.abs(r[:, -1]).mean() for r in residuals)] if x.shape[1] == 2 else []
    return float(np.mean(np.log2(1 + np.array([first] + others))))
