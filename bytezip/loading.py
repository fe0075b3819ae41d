"""The model an archive is coded with: loading it once per (path, device), its identity (name and digest of its
weights), the priming dictionary shipped beside it, and the device it runs on.

Why a module of its own: loading a model is the one step that needs torch and the weights on disk; the plain
codecs, the format and the options need neither, and the coding loop (`bytezip.neural`) only uses a loaded
`CodingModel`. Where models are installed and how names resolve is `bytezip.registry`.
"""
from __future__ import annotations

import hashlib
import json
import lzma
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from . import dictionary as priming
from . import format as fmt
from . import registry
from .exact import ExactMegabyte
from .format import BytezipError, ModelError
from .mixing import History
from .model import Megabyte, canonical_weights, load_model

if TYPE_CHECKING:
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


def weights_digest(model: Megabyte) -> bytes:
    """SHA-256 prefix of the canonical weights: the model identity archives record."""
    return hashlib.sha256(canonical_weights(model)).digest()[:fmt.DIGEST_BYTES]


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
    if isinstance(model, Megabyte):
        return CodingModel(ExactMegabyte(model, device), "custom", weights_digest(model))
    base = resolve_model_path(model)
    key = (str(base.resolve()), str(device))
    if key not in _loaded:
        try:
            net = load_model(str(base))
            meta = json.loads(Path(str(base) + ".json").read_text())
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
        _loaded[key] = CodingModel(ExactMegabyte(net, device), model_id, weights_digest(net),
                                   dictionary, dictionary_digest)
    return _loaded[key]


def archive_model(model_id: str, model=None, device="cpu") -> CodingModel:
    """The model an archive names: `model` if it is a loaded one, else the installed model of that name (or
    the one `model` names or holds), only among installed models, never as a path (`registry`)."""
    if isinstance(model, (CodingModel, Megabyte)):
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


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BytezipError("--device cuda asked for, but no CUDA device is available")
    return device
