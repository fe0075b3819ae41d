"""Where models are installed, and how a model name becomes the files that are opened.

A model is `<prefix>.safetensors` + `<prefix>.json`, with an optional priming dictionary `<prefix>.dict.xz`
beside them. Names reach bytezip from two places that deserve different trust:

* **The user** (`--model`, `$BYTEZIP_MODEL`, `Compressor(model=...)`, `Decompressor(model=...)`): a path
  prefix (or the path of either file), a directory of models, or a plain name looked up among the installed
  models. The user may point bytezip at any file they like.
* **An archive** (the model name in its header, see `bytezip.format`): an archive may come from anyone.
  If its name were tried as a path, a crafted archive would choose which files bytezip opens and parses
  (`../../x`, `/dev/zero`, a FIFO that never answers, a huge file on a network mount) before the digest check
  could reject them. So an archive's name must be a plain name (`format.MODEL_NAME`, no path separators, not starting
  with a dot) and it resolves only among *installed* models: the directory the user named with `--model` or
  `$BYTEZIP_MODEL` (the directory itself, or the one holding the named path prefix), then the package's own
  models. The digest in the archive then checks that the weights found are the ones it was made with.

The package's models live in the repository's top-level `models/` folder, which setuptools maps to the
package `bytezip.models` (`package-dir` in pyproject.toml), so a wheel, an sdist install and an editable
install all carry them as package data, found through `importlib.resources`. A source checkout that is not
installed (or an editable install made before that mapping existed) falls back to `models/` beside the
`bytezip/` folder.
"""
from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

from .format import MODEL_NAME, ModelError

DEFAULT_MODEL = "bytezip-v1"
ENV = "BYTEZIP_MODEL"
FILES = (".safetensors", ".json")      # the two files a model needs (the dictionary is optional)


def package_models_dir() -> Path:
    """The models shipped with bytezip: the package data of `bytezip.models` (the repository's `models/`)."""
    try:
        where = importlib.resources.files("bytezip.models")
    except ModuleNotFoundError:      # a source checkout on sys.path, not installed with the package mapping
        return Path(__file__).resolve().parent.parent / "models"
    if not isinstance(where, Path):  # e.g. imported from a zip file: the weights must be real files to map
        raise ModelError(f"bytezip's models are not plain files here ({where}); install bytezip from a wheel "
                         f"or pass --model PATH")
    return where


def is_plain_name(name: str) -> bool:
    """Whether `name` can only mean a model among installed ones (what an archive's name must be)."""
    return MODEL_NAME.fullmatch(name) is not None


def _has_files(base: Path) -> bool:
    return all(Path(str(base) + ext).is_file() for ext in FILES)


def _prefix(path: Path) -> Path | None:
    """`path` as a model's path prefix, if both files are there (`.json`/`.safetensors` may be given too)."""
    base = path.with_suffix("") if path.suffix in FILES else path
    return base if _has_files(base) else None


def user_dir(value: str | os.PathLike | None) -> Path | None:
    """The directory a user-given `--model`/`$BYTEZIP_MODEL` value names: the value itself when it is a
    directory, the parent of a path prefix that exists; None for a plain name, 'none', or nothing."""
    if value is None or str(value) in ("", "none"):
        return None
    path = Path(value)
    base = _prefix(path)
    if base is not None:
        return base.parent
    return path if path.is_dir() else None


def search_dirs(user: str | os.PathLike | None = None, installed: Path | None = None) -> list[Path]:
    """Where a plain name is looked up, in order: the directory named by the user's value (`--model`), the
    one named by `$BYTEZIP_MODEL`, then the package's models (`installed`, default `package_models_dir()`)."""
    dirs: list[Path] = []
    for d in (user_dir(user), user_dir(os.environ.get(ENV)), installed or package_models_dir()):
        if d is not None and d not in dirs:
            dirs.append(d)
    return dirs


def find_installed(name: str, dirs: list[Path]) -> Path:
    """The path prefix of the plain model name `name` in the first of `dirs` that has both of its files."""
    for d in dirs:
        if _has_files(d / name):
            return d / name
    raise ModelError(f"model '{name}' not found (looked for {name}.safetensors/.json in "
                     f"{', '.join(str(d) for d in dirs)}; --model PATH picks another, --model none codes without one)")


def resolve(value: str | os.PathLike | None, installed: Path | None = None) -> Path:
    """The path prefix of a user-given model: `value`, else `$BYTEZIP_MODEL`, else the default model.
    A path prefix that exists (or either file's path) is taken as it is; a directory means the default model
    there (or among installed models); anything else must be a plain name among the installed models."""
    value = str(value or os.environ.get(ENV) or DEFAULT_MODEL)
    path = Path(value)
    base = _prefix(path)
    if base is not None:
        return base
    if path.is_dir():
        return find_installed(DEFAULT_MODEL, search_dirs(path, installed))
    if not is_plain_name(value):
        raise ModelError(f"model '{value}' not found (no {value}.safetensors/.json; "
                         f"--model PATH picks another, --model none codes without one)")
    return find_installed(value, search_dirs(None, installed))


def resolve_for_archive(archive_name: str, user: str | os.PathLike | None = None,
                        installed: Path | None = None) -> Path:
    """The path prefix of the model that decodes an archive naming `archive_name`.

    When the user chose a model (a path prefix or a plain name), that one: the archive's digest then says
    whether it fits. Otherwise (nothing, or a directory) the archive's name, which must be a plain name,
    among the installed models: never a path the archive supplies."""
    if user is not None and str(user) not in ("", "none") and not Path(user).is_dir():
        return resolve(user, installed)
    if not is_plain_name(archive_name):
        raise ModelError(f"archive needs model {archive_name!r}, which is not available: an archive can name "
                         f"only an installed model, not a path (--model PATH picks a model)")
    return find_installed(archive_name, search_dirs(user, installed))
