"""bytezip: lossless compression of any file with a MEGABYTE transformer and a range coder.

    import bytezip
    blob = bytezip.compress(data)
    assert bytezip.decompress(blob) == data
    with bytezip.open("data.bzp", "wb") as f:     # or "rb", "wt", "rt": streams, like gzip.open
        f.write(data)
"""
import os

# Busy-waiting OpenMP threads steal the core the other thread needs on small shared machines; this only
# takes effect when bytezip is imported before torch, as the command line does.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .codec import (ArchiveInfo, Compressor, Decompressor, coding_model, compress, decompress,
                    read_info)
from .fileobj import BytezipFile, open
from .format import BytezipError, ChecksumError, FormatError, ModelError

__version__ = "0.1.0"
__all__ = ["compress", "decompress", "open", "BytezipFile", "Compressor", "Decompressor", "ArchiveInfo",
           "read_info", "coding_model", "BytezipError", "FormatError", "ModelError", "ChecksumError", "__version__"]
