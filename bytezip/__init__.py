"""bytezip: lossless compression of any file with a MEGABYTE transformer and a range coder.

    import bytezip
    blob = bytezip.compress(data)
    assert bytezip.decompress(blob) == data
"""
from .codec import (ArchiveInfo, Compressor, Decompressor, coding_model, compress, decompress,
                    read_info)
from .format import BytezipError, ChecksumError, FormatError, ModelError

__version__ = "0.1.0"
__all__ = ["compress", "decompress", "Compressor", "Decompressor", "ArchiveInfo", "read_info",
           "coding_model", "BytezipError", "FormatError", "ModelError", "ChecksumError", "__version__"]
