"""Issue 27: the command line answers --version and --help without the codec, and coding on the CPU with the C
kernels built never imports torch: the exact model runs over numpy arrays read with safetensors' numpy API,
with the same frequencies and the same weights digest as the torch code."""
import ast
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bytezip import kernels, loading, registry
from bytezip.exact import ExactMegabyte
from bytezip.model import Megabyte, canonical_weights, numpy_weights
from bytezip.weights import ModelConfig, canonical_bytes, parameter_shapes, read_config, read_weights
from conftest import TINY, english_text

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = registry.package_models_dir() / registry.DEFAULT_MODEL
needs_kernels = pytest.mark.skipif(not kernels.available(), reason="the C kernels are not built")


def codec_imports_torch() -> bool:
    """Whether bytezip/codec.py still imports torch at module level (issue 27 asks codec.py to call
    `neural.set_threads` instead; until then every coding run loads torch through it)."""
    tree = ast.parse((ROOT / "bytezip" / "codec.py").read_text())
    return any(isinstance(n, ast.Import) and any(a.name == "torch" for a in n.names) for n in tree.body)


def run_python(code: str, **env) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600,
                         env={**os.environ, **env})
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.parametrize("cfg", [TINY, dataclasses.replace(TINY, n_kv_heads=2, mlp_ratio=3), None])
def test_parameter_shapes_are_the_state_dict(cfg):
    cfg = cfg or read_config(SHIPPED)[0]
    want = {k: tuple(v.shape) for k, v in Megabyte(cfg).state_dict().items()}
    assert parameter_shapes(cfg) == want


def test_model_config_is_still_importable_from_model():
    from bytezip import model
    assert model.ModelConfig is ModelConfig


def test_numpy_weights_give_the_torch_digest(model_files, trained_model):
    """The digest archives record is the same from the numpy arrays as from the torch model, for the shipped
    model and a tiny one."""
    for prefix in (str(SHIPPED), model_files):
        cfg, _ = read_config(prefix)
        weights = read_weights(prefix, cfg)
        from bytezip.model import load_model
        assert canonical_bytes(weights) == canonical_weights(load_model(prefix))
        assert loading.weights_digest(weights) == loading.weights_digest(load_model(prefix))
    assert canonical_bytes(numpy_weights(trained_model)) == canonical_weights(trained_model)


def test_weights_that_do_not_match_the_config_are_refused(tmp_path, model_files):
    from safetensors.numpy import save_file
    cfg, _ = read_config(model_files)
    weights = read_weights(model_files, cfg)
    bad = tmp_path / "bad"
    (tmp_path / "bad.json").write_text(Path(model_files + ".json").read_text())
    save_file({k: v for k, v in weights.items() if k != "head.weight"}, str(bad) + ".safetensors")
    with pytest.raises(ValueError, match="missing: \\['head.weight'\\]"):
        read_weights(bad, cfg)
    save_file({**weights, "head.weight": weights["head.weight"][:, :4].copy()}, str(bad) + ".safetensors")
    with pytest.raises(ValueError, match="head.weight has shape"):
        read_weights(bad, cfg)
    with pytest.raises(loading.ModelError, match="cannot load model"):
        loading.coding_model(str(bad))
    save_file({k: v.astype(np.float16) for k, v in weights.items()}, str(bad) + ".safetensors")
    assert read_weights(bad, cfg) is None        # not float32: the torch code loads it


@needs_kernels
def test_numpy_model_matches_the_torch_code(trained_model, monkeypatch):
    """The kernels' model made from numpy arrays against the torch code: the parallel forward and the steps,
    numpy in and out."""
    fast = ExactMegabyte.from_weights(trained_model.cfg, numpy_weights(trained_model))
    assert fast.kernel and not fast.torch_io
    with monkeypatch.context() as m:
        m.setattr(kernels, "LIB", None)
        slow = ExactMegabyte(trained_model)
        off = fast.frequencies(np.zeros((1, 8), dtype=np.int64))      # kernels off: its torch twin runs
    assert not slow.kernel and isinstance(off, np.ndarray)
    lanes = 3
    data = np.frombuffer(english_text()[:lanes * 64], dtype=np.uint8).astype(np.int64).reshape(lanes, 64)
    parallel = fast.frequencies(data)
    assert isinstance(parallel, np.ndarray) and parallel.dtype == np.int64
    assert np.array_equal(parallel, slow.frequencies(torch.from_numpy(data)).numpy())
    assert np.array_equal(off[0], slow.frequencies(torch.zeros(1, 8, dtype=torch.int64))[0].numpy())
    a, b = fast.stepper(lanes, 16), slow.stepper(lanes, 16)
    for t in range(64):
        got = a.next_frequencies()
        assert isinstance(got, np.ndarray) and np.array_equal(got, parallel[:, t]), f"byte {t}"
        assert np.array_equal(got, b.next_frequencies().numpy()), f"byte {t}"
        a.push(data[:, t])
        b.push(torch.from_numpy(data[:, t]))


@needs_kernels
@pytest.mark.xfail(codec_imports_torch(), strict=True,
                   reason="bytezip/codec.py imports torch at module level (issue 27: call neural.set_threads)")
@pytest.mark.parametrize("which", ["shipped", "tiny"])
def test_coding_with_the_kernels_imports_no_torch(which, model_files):
    model = "None" if which == "shipped" else repr(model_files)
    out = run_python(f"""
import bytezip, sys
data = b'x' * 1000 + bytes(range(256)) * 12
blob = bytezip.compress(data, model={model}, solid=False)
assert bytezip.decompress(blob, model={model}) == data
m = bytezip.coding_model({model})
assert m.exact.kernel
print('torch' in sys.modules, 'bytezip.model' in sys.modules)
""")
    assert out == "False False"


@needs_kernels
@pytest.mark.parametrize("which", ["shipped", "tiny"])
def test_archives_are_the_same_from_numpy_and_torch_loads(which, model_files):
    """The same archive whether the model is loaded as numpy arrays (kernels) or with torch (no kernels)."""
    model = "None" if which == "shipped" else repr(model_files)
    code = f"""
import bytezip, hashlib
data = bytes(range(256)) * 3 + b'the quick brown fox jumps over the lazy dog. ' * 40
blob = bytezip.compress(data, model={model}, solid=False)
assert bytezip.decompress(blob, model={model}) == data
print(hashlib.sha256(blob).hexdigest(), bytezip.coding_model({model}).digest.hex())
"""
    assert run_python(code) == run_python(code, BYTEZIP_KERNELS="0")


def test_version_and_help_load_no_codec():
    """`bytezip --version` and `--help`: click and the command's options only (no torch, model, codec, kernels,
    nor numpy, which image.py, pcm.py, png.py and userdict.py import where they use it)."""
    heavy = {"torch", "bytezip.codec", "bytezip.exact", "bytezip.model", "bytezip.loading", "bytezip.neural",
             "bytezip.mixing", "bytezip.kernels", "safetensors", "constriction", "numpy"}
    for flag in ("--version", "--help"):
        out = run_python(f"""
import sys
sys.argv = ['bytezip', {flag!r}]
from bytezip.cli import main
try:
    main()
except SystemExit as e:
    assert not e.code, e.code
print('heavy:', *sorted(m for m in {sorted(heavy)!r} if m in sys.modules))
""")
        assert out.splitlines()[-1] == "heavy:", flag


def test_resolve_device_without_torch():
    out = run_python("""
import sys
from bytezip import loading
cpu = loading.resolve_device('cpu')
print(cpu.type, str(cpu), loading.resolve_device(cpu) is cpu, 'torch' in sys.modules)
""")
    assert out == "cpu cpu True False"
    assert loading.resolve_device(torch.device("cpu")) == torch.device("cpu")
    if not torch.cuda.is_available():
        assert str(loading.resolve_device("auto")) == "cpu"
        with pytest.raises(loading.BytezipError, match="no CUDA device"):
            loading.resolve_device("cuda")


def test_cpu_threads_is_what_torch_says():
    """The default number of workers, without torch, is torch's default thread count."""
    expected = run_python("import torch; print(torch.get_num_threads())")
    assert run_python("from bytezip import loading; print(loading.cpu_threads())") == expected
    assert run_python("from bytezip import loading; print(loading.cpu_threads())", OMP_NUM_THREADS="1") == "1"
    assert run_python("import sys; from bytezip import loading; loading.set_threads(3); import torch; "
                      "print(loading.cpu_threads(), torch.get_num_threads())") == "3 3"


def test_inputs_of_a_few_bytes_skip_the_model(tmp_path):
    """Up to MODEL_MIN_BYTES, the whole-input archive beats the model's (its header fields alone cost more), so
    the codec writes it without trying the model and the command line does not load it: the same archive."""
    from bytezip import codec
    import bytezip
    for data in (b"", b"x", b"hello", bytes(range(16)), b"a" * codec.MODEL_MIN_BYTES):
        with_model = bytezip.Compressor(solid=False).compress(data)
        assert len(codec._solid_archive(data)) < len(with_model)
        (tmp_path / "t").write_bytes(data)
        subprocess.run([sys.executable, "-m", "bytezip", "-f", "-q", str(tmp_path / "t")], check=True)
        assert (tmp_path / "t.bzp").read_bytes() == bytezip.compress(data) == codec._solid_archive(data)
    (tmp_path / "big").write_bytes(b"x" * (codec.MODEL_MIN_BYTES + 1))
    loaded = run_python(f"""
from bytezip import cli, loading
for name in ({str(tmp_path / 't')!r}, {str(tmp_path / 'big')!r}):
    cli.cli.main(args=['-f', '-q', name], standalone_mode=False)
    print(len(loading._loaded), end=' ')
""")
    assert loaded == "0 1"                # the model loads for the longer input only
