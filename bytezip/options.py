"""Coding options: one frozen, keyword-only dataclass shared by the library (`Compressor`, `Decompressor`,
`compress`, `decompress`, `bytezip.open`), the command line and the benchmarks.

Why a module of its own: its field defaults are the only defaults there are, so `bytezip.compress(data)` and
`bytezip FILE` write the same archive, and every value is checked once, here, whoever gives it (a chunk size
of 0 is refused, not silently replaced by the default). It loads neither torch nor the model, so the command
line can check its options before anything heavy is imported.

One word per idea:

- `lanes`: chunks coded in lockstep, as the lanes of one batch. Compressing with a shared history, the
  chunks per round (each round decodes as that many lanes; default: from the input size, about 8 rounds of
  1 to 64 chunks); compressing without one, the chunks coded together (default 64); decompressing, the most
  neural chunks decoded together (default: two a decoding thread on a CPU, 64 on a GPU; memory follows it,
  whatever an archive declares).
- `workers`: threads that code a batch's lanes in as many parts (default: one per torch thread, one on a GPU).
- `threads`: torch's CPU threads (default: torch's own setting; 0: every core this process may use).
- `frame_size`: input bytes per frame, an independent archive (`bytezip.frames`; default: one frame);
  `processes`: frames coded at once, each in a worker process (compress and decompress; 0: one per core).
- `level`: 1 to 9, as zstd's levels, a trade of ratio for speed (`LEVELS`): level 1 runs no model, the
  others set how chunks are grouped into rounds, which every archive records already, so any decoder reads
  any level.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from typing import Any

from . import format as fmt
from .format import BytezipError

DEFAULT_LEVEL = 6
DEFAULT_LANES = 64        # lanes when not set and not taken from the input size (see the module's docstring)
DEVICES = re.compile(r"auto|cpu|cuda(:\d+)?")
LEGACY_NAMES = {"round_chunks": "lanes"}     # older keyword names still accepted by `coding_options`


@dataclass(frozen=True)
class Level:
    """How a level codes. Level 1 runs no model (lzma, zstd or raw per chunk, and the whole input as one lzma
    or zstd chunk): it decodes at tens of MB/s where the model decodes at KB/s on a CPU. The others group the
    chunks into rounds: a chunk reads only the rounds before its own, so more rounds leave more history to more
    chunks; a round costs its chunks' length in sequential steps, its lanes split among the threads. With the
    steps in C a lane-step costs about the same at 1 to 16 lanes a thread on an AVX2 CPU (so level 9 decodes
    at 54-59% of the default's speed there, and levels 2-5 gain nothing on the default: their larger rounds
    cost as much a lane; `benchmarks/runs/2026-12-07-decode-loop`); a GPU still gains from many lanes."""
    rounds: int | None       # rounds an input of known size is coded in, about (they grow 1, 1, 2, 4, ... to the
                             # largest first); None: no model at all
    lanes: int | None = None     # the largest round, where the level fixes it (9: one chunk a round)


LEVELS = {
    1: Level(None),          # no model: the best of lzma, zstd and raw, as `--model none`
    2: Level(2), 3: Level(3), 4: Level(4), 5: Level(6),
    6: Level(8),             # the default
    7: Level(16), 8: Level(32),
    9: Level(1, lanes=1),    # every chunk its own round, reading all before it: sequential, the slowest
}


class OptionError(BytezipError, ValueError):
    """An invalid option value; `field` names the option (the command line shows its flag)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, kw_only=True)
class CodingOptions:
    """How to code. Compressing reads every field; decompressing reads model, device, threads, workers, lanes
    and dictionary (an archive records the rest).

    model: None ($BYTEZIP_MODEL, else the shipped model, to compress; the model the archive names, to
    decompress), an installed name or path prefix, a `Megabyte` or a `CodingModel`. neural=False: lzma, zstd
    and raw chunks only, no model (`bytezip --model none`). mixing=False: the model alone, without match and
    context models. history=False: every chunk independent (decodable with any lanes). audio / image=False:
    never mix in the sample / pixel predictor (by default used when the input is 16-bit PCM / an 8-bit
    image). solid: also code a whole input of up to 16 MiB as one lzma/zstd chunk and keep the smaller
    archive. chunk_size: bytes per chunk (default: the model's context; 64 KiB without a model).
    dictionary: a user dictionary (`bytezip.userdict`: a path or a loaded `UserDictionary`). frame_size:
    code the input as independent archives (frames) of this many bytes each, concatenated; processes: frames
    coded (or decoded) at once in worker processes, the same archive for any number. level: 1 (fastest) to 9
    (smallest), `LEVELS`; lanes and history=False, where given, override what the level chooses."""
    model: Any = None
    device: Any = "auto"
    threads: int | None = None
    workers: int | None = None
    lanes: int | None = None
    chunk_size: int | None = None
    neural: bool = True
    mixing: bool = True
    history: bool = True
    audio: bool = True
    image: bool = True
    solid: bool = True
    dictionary: Any = None
    frame_size: int | None = None
    processes: int = 1
    level: int = DEFAULT_LEVEL

    def __post_init__(self):
        _check_int("chunk_size", self.chunk_size, 1, fmt.MAX_CHUNK_SIZE, "chunk size")
        _check_int("lanes", self.lanes, 1, fmt.MAX_ROUND_CHUNKS, "lanes (chunks coded together)")
        _check_int("threads", self.threads, 0, None, "threads")
        _check_int("workers", self.workers, 1, None, "workers")
        _check_int("frame_size", self.frame_size, 1, 1 << 40, "frame size")
        _check_int("processes", self.processes, 0, 1024, "processes")
        _check_int("level", self.level, min(LEVELS), max(LEVELS), "level")
        if isinstance(self.device, str):
            if not DEVICES.fullmatch(self.device):
                raise OptionError("device", f"device must be auto, cpu or cuda, not {self.device!r}")
        elif not hasattr(self.device, "type"):        # a torch.device
            raise OptionError("device", f"device must be auto, cpu, cuda or a torch.device, not {self.device!r}")

    @property
    def torch_threads(self) -> int | None:
        """The torch thread count to set, or None to keep torch's own (threads=0: every core we may use)."""
        return all_cores() if self.threads == 0 else self.threads


def _check_int(field: str, value, low: int, high: int | None, what: str):
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise OptionError(field, f"{what} must be a whole number, not {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise OptionError(field, f"{what} must be {bounds}, not {value}")


def coding_options(options: CodingOptions | None = None, **fields) -> CodingOptions:
    """`options` (default: the defaults) with `fields` replaced; the older names in LEGACY_NAMES are accepted
    (`round_chunks=4` is `lanes=4`). An unknown name is a TypeError, as for any function."""
    for old, new in LEGACY_NAMES.items():
        if old in fields:
            if new in fields:
                raise TypeError(f"{old} is the old name of {new}; give one of them")
            fields[new] = fields.pop(old)
    known = {f.name for f in dataclasses.fields(CodingOptions)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise TypeError(f"unknown coding option {unknown[0]!r} (options: {', '.join(sorted(known))})")
    return dataclasses.replace(options, **fields) if options is not None else CodingOptions(**fields)


def all_cores() -> int:
    """CPU threads this process may run on (`threads=0`, `-T0`): its affinity mask, else the machine's count."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1
