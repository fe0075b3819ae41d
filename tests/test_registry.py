"""Model lookup (bytezip/registry.py): an archive's model name resolves only among installed models, never as
a path the archive supplies; what the user names (--model, $BYTEZIP_MODEL, model=) may be any path."""
import dataclasses
import importlib.resources
import io
import pathlib
import re

import pytest
from click.testing import CliRunner

import bytezip
from bytezip import codec, loading, registry
from bytezip import format as fmt
from bytezip.cli import cli
from bytezip.format import FormatError, ModelError
from bytezip.model import save_model
from conftest import english_text

NAME = "registry-test"
# An archive naming a path is refused by the model lookup (ModelError) or already by the header reader
REFUSED, REFUSED_MESSAGE = (ModelError, FormatError), "not available|not a plain model name"
DATA = english_text()[5000:6500]


@pytest.fixture(scope="module")
def model(trained_model, tmp_path_factory):
    """conftest's trained tiny model saved under its name, and archives of DATA made with it."""
    d = tmp_path_factory.mktemp("saved")
    prefix = d / NAME
    save_model(trained_model, str(prefix), extra={"name": NAME})
    cm = bytezip.coding_model(str(prefix))
    return dataclasses.make_dataclass("M", ["prefix", "cm"])(prefix, cm)


def archive_naming(model, name: str) -> bytes:
    """An archive of DATA whose model-coded chunks were made with the tiny model, its header naming `name`.
    A name that is not a plain one is written over a plain one of its length afterwards (bytezip never
    writes it, and format versions whose checksum covers the header fail that check, but only at the end:
    the model is looked up first)."""
    stand_in = name if registry.is_plain_name(name) else "Q" * len(name)
    blob = bytezip.compress(DATA, model=dataclasses.replace(model.cm, model_id=stand_in), solid=False)
    info = bytezip.read_info(io.BytesIO(blob))
    assert set(fmt.MODEL_CODECS) & {c.codec for c in info.chunks} and info.header.model_id == stand_in
    at = blob.index(bytes([len(name)]) + stand_in.encode())
    return blob[:at + 1] + name.encode() + blob[at + 1 + len(name):]


def install(model, where: pathlib.Path, name: str = NAME) -> pathlib.Path:
    """The tiny model's files copied to where/name.{safetensors,json}; returns the prefix."""
    where.mkdir(parents=True, exist_ok=True)
    for ext in (".safetensors", ".json"):
        (where / (name + ext)).write_bytes(pathlib.Path(str(model.prefix) + ext).read_bytes())
    return where / name


@pytest.fixture
def env(tmp_path, monkeypatch):
    """cwd tmp/work, an empty installed-models dir, no $BYTEZIP_MODEL; records every model bytezip loads and
    every path it probes with is_file."""
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.delenv("BYTEZIP_MODEL", raising=False)
    installed = tmp_path / "installed"
    installed.mkdir()
    monkeypatch.setattr(codec, "MODELS_DIR", installed)
    loaded, probed = [], []
    real_load, real_is_file = loading.load_model, pathlib.Path.is_file

    def spy_load(prefix):
        loaded.append(pathlib.Path(prefix).resolve())
        return real_load(prefix)

    def spy_is_file(self):
        probed.append(self.resolve())
        return real_is_file(self)

    monkeypatch.setattr(loading, "load_model", spy_load)
    monkeypatch.setattr(pathlib.Path, "is_file", spy_is_file)
    return dataclasses.make_dataclass("Env", ["root", "installed", "loaded", "probed"])(
        tmp_path, installed, loaded, probed)


def untouched(env, evil: pathlib.Path):
    """Nothing under `evil` (the directory holding the files an archive pointed at) was loaded or probed."""
    evil = evil.resolve()
    assert not [p for p in env.loaded + env.probed if p.is_relative_to(evil)], (env.loaded, env.probed)


# -- an archive cannot make bytezip open a path ------------------------------------------------------
def test_archive_naming_a_relative_path_is_refused(model, env):
    """`../evil/m` names a real copy of the right model (same digest): the old lookup opened and used it."""
    install(model, env.root / "evil", "m")
    blob = archive_naming(model, "../evil/m")
    with pytest.raises(REFUSED, match=REFUSED_MESSAGE) as e:
        bytezip.decompress(blob)
    assert "\n" not in str(e.value)
    untouched(env, env.root / "evil")


def test_archive_naming_an_absolute_path_is_refused(model, env):
    prefix = install(model, env.root / "evil", "m")
    blob = archive_naming(model, str(prefix))
    assert str(prefix).startswith("/")
    with pytest.raises(REFUSED, match=REFUSED_MESSAGE):
        bytezip.decompress(blob)
    untouched(env, env.root / "evil")


def test_archive_name_is_not_looked_up_in_the_current_directory(model, env):
    """A plain name, with the model's files in the current directory: not installed, so not found."""
    install(model, env.root / "work")
    blob = archive_naming(model, NAME)
    with pytest.raises(ModelError, match=f"needs model '{NAME}'.*not available"):
        bytezip.decompress(blob)
    untouched(env, env.root / "work")


def test_archive_with_a_path_as_model_name_is_one_line_on_the_command_line(model, env):
    install(model, env.root / "evil", "m")
    (env.root / "work" / "x.bzp").write_bytes(archive_naming(model, "../evil/m"))
    r = CliRunner().invoke(cli, ["-d", "-c", "x.bzp"], catch_exceptions=False)
    assert r.exit_code == 1 and r.stdout_bytes == b""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bytezip: x.bzp: "), r.stderr
    assert re.search(REFUSED_MESSAGE, lines[0]), r.stderr
    untouched(env, env.root / "evil")


@pytest.mark.parametrize("name", ["../m", "/abs/m", "a/b", "a\\b", ".hidden", "..", ".", "", "-x", "a b",
                                  "x" * 256])
def test_names_that_are_not_plain(name):
    assert not registry.is_plain_name(name)
    with pytest.raises(ModelError, match="not available"):
        registry.resolve_for_archive(name, None, pathlib.Path("/nonexistent"))


@pytest.mark.parametrize("name", ["bytezip-v1", "m", "tiny_test.2", "A9", "x" * 255])
def test_plain_names(name):
    assert registry.is_plain_name(name)


# -- archives find installed models --------------------------------------------------------------------
def test_archive_name_found_among_the_package_models(model, env):
    install(model, env.installed)
    assert bytezip.decompress(archive_naming(model, NAME)) == DATA
    assert env.loaded == [(env.installed / NAME).resolve()]


@pytest.mark.parametrize("how", ["directory", "prefix of another model there"])
def test_archive_name_found_in_the_directory_of_bytezip_model(model, env, monkeypatch, how):
    mine = install(model, env.root / "mine")
    install(model, env.root / "mine", "other")
    monkeypatch.setenv("BYTEZIP_MODEL", str(mine.parent if how == "directory" else mine.parent / "other"))
    assert bytezip.decompress(archive_naming(model, NAME)) == DATA


def test_archive_name_found_in_a_directory_given_as_model(model, env):
    mine = install(model, env.root / "mine")
    assert bytezip.decompress(archive_naming(model, NAME), model=str(mine.parent)) == DATA
    install(model, env.installed, registry.DEFAULT_MODEL)   # the command line checks --model DIR can compress
    r = CliRunner().invoke(cli, ["-d", "-c", "--model", str(mine.parent), "-"],
                           input=archive_naming(model, NAME), catch_exceptions=False)
    assert r.exit_code == 0 and r.stdout_bytes == DATA, r.stderr


# -- what the user names may be any path ------------------------------------------------------------
def test_user_given_path_prefix_still_works(model, env):
    """--model PATH decodes an archive whose model is installed nowhere: the user chose the file, the digest
    checks it; and compresses with it."""
    prefix = install(model, env.root / "elsewhere", "anything")
    blob = archive_naming(model, NAME)
    with pytest.raises(ModelError, match="not available"):
        bytezip.decompress(blob)
    assert bytezip.decompress(blob, model=str(prefix)) == DATA
    assert bytezip.decompress(blob, model=str(prefix) + ".json") == DATA
    assert bytezip.decompress(bytezip.compress(DATA, model=str(prefix), solid=False), model=str(prefix)) == DATA
    assert codec.resolve_model_path(str(prefix)) == prefix
    (env.root / "work" / "x.bzp").write_bytes(blob)
    r = CliRunner().invoke(cli, ["-d", "-c", "--model", str(prefix), "x.bzp"], catch_exceptions=False)
    assert r.exit_code == 0 and r.stdout_bytes == DATA, r.stderr


def test_user_given_relative_path_prefix(model, env):
    install(model, env.root / "work" / "sub", "m")
    assert codec.resolve_model_path("sub/m") == pathlib.Path("sub/m")
    assert codec.resolve_model_path("sub/m.safetensors") == pathlib.Path("sub/m")


def test_user_given_directory_means_the_default_model_there(model, env):
    install(model, env.root / "mine", registry.DEFAULT_MODEL)
    assert codec.resolve_model_path(str(env.root / "mine")) == env.root / "mine" / registry.DEFAULT_MODEL


def test_user_given_name_not_found_is_one_line(env):
    with pytest.raises(ModelError, match="model 'no-such-model' not found") as e:
        codec.resolve_model_path("no-such-model")
    assert "\n" not in str(e.value) and str(env.installed) in str(e.value)


# -- the package's own models ---------------------------------------------------------------------------
def test_package_models_are_package_data():
    d = registry.package_models_dir()
    for ext in (".safetensors", ".json", ".dict.xz"):
        assert (d / (registry.DEFAULT_MODEL + ext)).is_file()
    assert (d / "README.md").is_file()
    try:
        where = importlib.resources.files("bytezip.models")
    except ModuleNotFoundError:           # a checkout on sys.path, or an editable install that predates the
        assert d == pathlib.Path(bytezip.__file__).resolve().parent.parent / "models"   # bytezip.models mapping
    else:
        assert pathlib.Path(str(where)) == d


def test_default_model_is_the_shipped_one(monkeypatch):
    monkeypatch.delenv("BYTEZIP_MODEL", raising=False)
    assert registry.resolve(None) == registry.package_models_dir() / registry.DEFAULT_MODEL


def test_bytezip_model_picks_the_model_to_compress_with(model, env, monkeypatch):
    prefix = install(model, env.root / "mine", "m")
    monkeypatch.setenv("BYTEZIP_MODEL", str(prefix))
    assert codec.resolve_model_path(None) == prefix
    assert bytezip.Compressor().model.digest == model.cm.digest
    monkeypatch.setenv("BYTEZIP_MODEL", str(env.root / "mine"))     # a directory: the default name there ...
    install(model, env.installed, registry.DEFAULT_MODEL)            # ... or among the installed models
    assert codec.resolve_model_path(None) == env.installed / registry.DEFAULT_MODEL
