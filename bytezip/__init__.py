"""bytezip: lossless compression of any file with a MEGABYTE transformer and a range coder.

    import bytezip
    blob = bytezip.compress(data)
    assert bytezip.decompress(blob) == data
    with bytezip.open("data.bzp", "wb") as f:     # or "rb", "wt", "rt": streams, like gzip.open
        f.write(data)

The coding names (`compress`, `Compressor`, ...) are loaded on first use (PEP 562), so that importing a light
module such as `bytezip.format` or `bytezip.options` does not load torch, the model or the C kernels.
"""
import importlib
import os

# Busy-waiting OpenMP threads steal the core the other thread needs on small shared machines; this only
# takes effect when bytezip is imported before torch, as the command line does.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .fileobj import BytezipFile, open
from .format import BytezipError, ChecksumError, FormatError, ModelError
from .options import CodingOptions

__version__ = "0.1.0"
_LAZY = {name: "codec" for name in ("compress", "decompress", "Compressor", "Decompressor", "ArchiveInfo",
                                    "read_info", "coding_model")}
__all__ = ["compress", "decompress", "open", "BytezipFile", "Compressor", "Decompressor", "CodingOptions",
           "ArchiveInfo", "read_info", "coding_model", "BytezipError", "FormatError", "ModelError",
           "ChecksumError", "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
