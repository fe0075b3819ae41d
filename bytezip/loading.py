"""The model an archive is coded with: loading it once per (path, device), its identity (name and digest of its
weights), the priming dictionary shipped beside it, and the device it runs on.

Why a module of its own: loading a model is the one step that needs the weights on disk; the plain codecs,
the format and the options do not, and the coding loop (`bytezip.neural`) only uses a loaded `CodingModel`.
Where the C kernels run the model (the CPU, kernels built), the weights are read as numpy arrays and torch is
never imported (a one-byte file codes in a fraction of a second); otherwise a `Megabyte` is loaded with torch.
Both give the same model, digest and archives. Where models are installed and how names resolve is
`bytezip.registry`.
"""
from __future__ import annotations

import glob
import hashlib
import importlib.util
import lzma
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import dictionary as priming
from . import format as fmt
from . import registry
from .exact import Device, ExactMegabyte, kernels_fit
from .format import BytezipError, ModelError
from .mixing import History
from .weights import ModelConfig, canonical_bytes, read_config, read_weights

if TYPE_CHECKING:
    from .model import Megabyte
    from .userdict import UserDictionary

MODELS_DIR = registry.package_models_dir()   # the package's models (bytezip.models); see bytezip/registry.py
DEFAULT_MODEL = registry.DEFAULT_MODEL


@dataclass
class CodingModel:
    """An exact model plus the identity recorded in archives (name and digest of its weights), and the
    priming dictionary shipped with it (statistics and digest), if any."""
    exact: ExactMegabyte
    model_id: str
    digest: bytes
    dictionary: History | None = None
    dictionary_digest: bytes = b""

    @property
    def context(self) -> int:
        return self.exact.cfg.patch_size * self.exact.cfg.max_patches


def weights_digest(model: Megabyte | dict[str, np.ndarray]) -> bytes:
    """SHA-256 prefix of the canonical weights (of a `Megabyte`, or of its weights as numpy arrays: the same
    bytes): the model identity archives record."""
    if isinstance(model, dict):
        blob = canonical_bytes(model)
    else:
        from .model import canonical_weights
        blob = canonical_weights(model)
    return hashlib.sha256(blob).digest()[:fmt.DIGEST_BYTES]


def is_megabyte(model) -> bool:
    """Whether `model` is a `Megabyte` (never true while bytezip.model, and torch, are not loaded)."""
    module = sys.modules.get("bytezip.model")
    return module is not None and isinstance(model, module.Megabyte)


def load_model(path_prefix: str) -> tuple[ModelConfig, dict, dict[str, np.ndarray] | None]:
    """A model's files, read (every model bytezip codes with is read here): its config, its metadata (the JSON)
    and its float32 weights as numpy arrays, checked against the config (None when they are not float32:
    torch reads those)."""
    cfg, meta = read_config(path_prefix)
    return cfg, meta, read_weights(path_prefix, cfg)


def load_exact(base: str | os.PathLike, device) -> tuple[ExactMegabyte, bytes, dict]:
    """The exact model of `<base>.safetensors` + `.json`, the digest of its weights and its metadata: numpy
    arrays where the C kernels run it (no torch), else a `Megabyte` loaded with torch."""
    cfg, meta, weights = load_model(str(base))
    if weights is not None and kernels_fit(cfg, device):
        return ExactMegabyte.from_weights(cfg, weights, device), weights_digest(weights), meta
    from .model import load_model as load_megabyte
    net = load_megabyte(str(base))
    cpu_threads()                               # torch, now loaded, gets the count set before (`set_threads`)
    return ExactMegabyte(net, device), weights_digest(net), meta


def resolve_model_path(name: str | os.PathLike | None) -> Path:
    """A model is `<prefix>.safetensors` + `<prefix>.json`: a user-given path prefix, directory or installed
    name (`registry.resolve`). Never pass an archive's name here: that is `registry.resolve_for_archive`."""
    return registry.resolve(name, MODELS_DIR)


_loaded: dict[tuple[str, str], CodingModel] = {}


def coding_model(model=None, device="cpu") -> CodingModel:
    """Accepts None (the shipped model), a name or path prefix, a `Megabyte`, or a `CodingModel`."""
    if isinstance(model, CodingModel):
        return model
    device = resolve_device(device)
    if is_megabyte(model):
        return CodingModel(ExactMegabyte(model, device), "custom", weights_digest(model))
    base = resolve_model_path(model)
    key = (str(base.resolve()), str(device))
    if key not in _loaded:
        try:
            exact, digest, meta = load_exact(base, device)
        except Exception as e:  # a damaged model file is the user's problem to see, in one line
            raise ModelError(f"cannot load model {base}: {e}") from None
        model_id = str(meta.get("name") or base.name)[:255]   # never empty: that means "no model"
        if not model_id.isascii() or not model_id.isprintable():
            raise ModelError(f"model {base}: its name {model_id!r} is not printable ASCII (archives record it)")
        dictionary, dictionary_digest, dictionary_path = None, b"", Path(str(base) + priming.SUFFIX)
        if dictionary_path.is_file():
            try:
                dictionary, dictionary_digest = priming.load(dictionary_path)
            except (OSError, lzma.LZMAError) as e:
                raise ModelError(f"cannot load the dictionary of model {base}: {e}") from None
        _loaded[key] = CodingModel(exact, model_id, digest, dictionary, dictionary_digest)
    return _loaded[key]


def archive_model(model_id: str, model=None, device="cpu") -> CodingModel:
    """The model an archive names: `model` if it is a loaded one, else the installed model of that name (or
    the one `model` names or holds), only among installed models, never as a path (`registry`)."""
    if isinstance(model, CodingModel) or is_megabyte(model):
        return coding_model(model, device)
    try:
        base = registry.resolve_for_archive(model_id, model, MODELS_DIR)
    except ModelError:
        if not registry.is_plain_name(model_id):
            raise
        raise ModelError(f"archive needs model '{model_id}', and model '{model or model_id}' is not available "
                         f"(see --model)") from None
    return coding_model(base, device)


def dictionary_model(ud: UserDictionary, model=None, device="cpu") -> CodingModel:
    """The model a user dictionary was made for: `model` if given (its weights must be the ones the dictionary
    names), else the installed model of that name."""
    if model is None or (isinstance(model, (str, os.PathLike)) and Path(model).is_dir()):
        model = registry.resolve_for_archive(ud.model_id, model, MODELS_DIR)
    m = coding_model(model, device)
    if m.digest != ud.model_digest:
        raise ModelError(f"the dictionary was made for model '{ud.model_id}' ({ud.model_digest.hex()}), but the "
                         f"model here is '{m.model_id}' ({m.digest.hex()})")
    if m.dictionary_digest != ud.priming_digest:
        raise ModelError(f"the dictionary was made for model '{ud.model_id}' with priming dictionary "
                         f"{ud.priming_digest.hex() or 'none'}, but the model here has "
                         f"{m.dictionary_digest.hex() or 'none'}")
    return m


def resolve_device(device):
    """"auto" (or None): CUDA where torch has a device, else the CPU; "cpu"; "cuda[:N]" (an error without a
    device); or a torch.device. The CPU is a light `exact.Device` when torch is not needed to say so: torch
    is imported only where CUDA may be there (a CUDA build of torch and an NVIDIA driver) or is asked for."""
    if device is not None and not isinstance(device, str):             # a torch.device, or an exact.Device
        if device.type != "cuda":
            return device
        device = str(device)
    if device in (None, "auto"):
        if not _cuda_possible():
            return Device("cpu")
        import torch
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return Device("cpu")
    import torch
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BytezipError("--device cuda asked for, but no CUDA device is available")
    return device


def _cuda_possible() -> bool:
    """False only when torch cannot have a CUDA device here: torch is not installed, is a CPU build (its
    version.py says cuda = None and hip = None), or is a CUDA build on Linux without an NVIDIA driver."""
    if "torch" in sys.modules:
        return True                    # loaded already: asking it costs nothing
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return False
    try:
        version = (Path(spec.origin).parent / "version.py").read_text()
    except OSError:
        return True
    gpu_builds = [m.group(1) for m in re.finditer(r"^(cuda|hip)\b[^=\n]*=\s*(?!None\b)\S", version, re.M)]
    if not gpu_builds:
        return False
    if gpu_builds == ["cuda"] and sys.platform.startswith("linux"):
        return os.path.exists("/proc/driver/nvidia/version") or bool(glob.glob("/dev/nvidia[0-9]*"))
    return True


_threads: int | None = None     # set_threads' count while torch is not loaded (torch gets it once loaded)


def set_threads(n: int | None):
    """CPU threads for the model and the coding workers (`-T N`): torch's intra-op threads if torch is loaded
    (else when it is, `cpu_threads`), and the count `default_workers` takes. None or 0: leave them."""
    global _threads
    if not n:
        return
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
        _threads = None
    else:
        _threads = n


def cpu_threads() -> int:
    """What torch.get_num_threads() says, without importing torch: torch's own count if it is loaded, else
    the last `set_threads`, else torch's default (OMP_NUM_THREADS, MKL_NUM_THREADS, else physical cores)."""
    global _threads
    torch = sys.modules.get("torch")
    if torch is not None:
        if _threads is not None:                 # set before torch was loaded (by the torch code path)
            torch.set_num_threads(_threads)
            _threads = None
        return torch.get_num_threads()
    if _threads is not None:
        return _threads
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return physical_cores()


def physical_cores() -> int:
    """The machine's physical cores (as torch counts them by default), else its logical CPUs."""
    cores = set()
    for path in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/topology/core_id"):
        try:
            with open(path) as f:
                core = f.read().strip()
            with open(os.path.join(os.path.dirname(path), "physical_package_id")) as f:
                cores.add((f.read().strip(), core))
        except OSError:
            continue
    return len(cores) or os.cpu_count() or 1
