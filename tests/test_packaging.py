"""Packaging: a wheel built from the sources (`python -m build`: an sdist, then the wheel from it) carries the
model, installs into a fresh virtual environment and round-trips a file from a directory outside the
repository (marked slow: ~90 s; .ci/run does the same as a step of its own); and pytest turns warnings raised in bytezip's own code into errors (pyproject's filterwarnings)."""
import importlib.util
import io
import os
import shutil
import subprocess
import sys
import tarfile
import venv
import warnings
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# what a clean checkout holds of the package (the tests, docs and benchmarks are not part of it)
SOURCES = ["bytezip", "models", "pyproject.toml", "setup.py", "README.md"]
IGNORE = shutil.ignore_patterns("__pycache__", "*.so", "*.pyc", "*.egg-info", "build", "dist")
DEPENDENCIES = ["torch", "numpy", "click", "zstandard", "safetensors", "brotli", "PIL", "soundfile", "rich",
                "matplotlib", "constriction"]
MAX_WHEEL = 12 << 20


def dependency_dirs() -> list[str]:
    """The directories this interpreter imports bytezip's dependencies from (so the new environment reuses
    them through a .pth file: nothing is downloaded; that directory's own .pth files, such as an editable
    bytezip's finder, are not run)."""
    dirs = []
    for name in DEPENDENCIES:
        spec = importlib.util.find_spec(name)
        assert spec and spec.origin, f"{name} is not installed"
        d = str(Path(spec.origin).resolve().parent.parent)
        if d not in dirs:
            dirs.append(d)
    return dirs


def run(*args, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([str(a) for a in args], capture_output=True, timeout=600, **kw)
    assert r.returncode == 0, (args, r.stdout.decode(errors="replace")[-3000:], r.stderr.decode(errors="replace")[-3000:])
    return r


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """An sdist and a wheel built from a copy of the package's sources (the working tree is not touched)."""
    pytest.importorskip("build", reason="the test extra installs build")
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=IGNORE)
        else:
            shutil.copy(REPO / name, src / name)
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, src)
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return wheel, sdist


@pytest.mark.slow      # ~50 s to build (the C kernels compile), ~40 s to install and round-trip; .ci/run
def test_wheel_and_sdist_carry_the_model(dist):  # does the same as a step of its own on every run
    wheel, sdist = dist
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in ("bytezip-v1.safetensors", "bytezip-v1.json", "bytezip-v1.dict.xz", "README.md", "__init__.py"):
        assert f"bytezip/models/{f}" in names
        assert any(n.endswith(f"/models/{f}") for n in tarfile.open(sdist).getnames())
    assert wheel.stat().st_size < MAX_WHEEL


@pytest.mark.slow
def test_installed_wheel_round_trips_a_file_anywhere(dist, tmp_path):
    wheel, _ = dist
    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    python, bytezip = env / "bin" / "python", env / "bin" / "bytezip"
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.decode().strip()
    Path(site, "bytezip-test-dependencies.pth").write_text("\n".join(dependency_dirs()) + "\n")
    run(python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel)

    work = tmp_path / "elsewhere"           # under the temporary directory, far from the repository
    work.mkdir()
    data = b"".join(Path(m.__file__).read_bytes() for m in (io, warnings))[:6000]
    (work / "f.txt").write_bytes(data)
    clean = {k: v for k, v in os.environ.items() if k not in ("BYTEZIP_MODEL", "PYTHONPATH", "PYTHONHOME")}
    run(bytezip, "f.txt", cwd=work, env=clean)
    out = run(bytezip, "-d", "-c", "f.txt.bzp", cwd=work, env=clean).stdout
    assert out == data
    listing = run(bytezip, "-l", "f.txt.bzp", cwd=work, env=clean).stdout.decode()
    assert "Model:           bytezip-v1" in listing       # coded with the model that came in the wheel
    where = run(python, "-c", "import bytezip, bytezip.registry as r; print(bytezip.__file__); "
                "print(r.package_models_dir())", cwd=work, env=clean).stdout.decode().split()
    assert all(Path(w).resolve().is_relative_to(env.resolve()) for w in where), where


# -- pyproject's filterwarnings ---------------------------------------------------------------------
def test_a_warning_in_bytezip_code_is_an_error():
    """A library function that warns as click's deprecated get_binary_stream did (stacklevel=2 attributes the
    warning to its caller), called from a bytezip module: the test fails."""
    library = {"__name__": "click.utils", "warnings": warnings}
    exec("def get_binary_stream():\n    warnings.warn('deprecated', DeprecationWarning, stacklevel=2)", library)
    caller = {"__name__": "bytezip.cli", "get_binary_stream": library["get_binary_stream"]}
    with pytest.raises(DeprecationWarning):
        exec("get_binary_stream()", caller)
