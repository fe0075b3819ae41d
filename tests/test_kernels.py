"""The compiled kernels compute exactly what the numpy code does: step by step, and whole archives."""
import io

import numpy as np
import pytest

import bytezip
from bytezip import format as fmt, kernels, mixing

from conftest import english_text, wav_bytes
from test_image import photo

pytestmark = pytest.mark.skipif(not kernels.available(), reason="the C kernels were not built (no C compiler at "
                                                                "install, or BYTEZIP_KERNELS=0): numpy codes alone")


def mixers(monkeypatch, *args, **kwargs) -> tuple[mixing.Mixer, mixing.Mixer]:
    """The same Mixer twice: on the numpy code, and on the kernels."""
    with monkeypatch.context() as m:
        m.setattr(kernels, "LIB", None)
        slow = mixing.Mixer(*args, **kwargs)
    fast = mixing.Mixer(*args, **kwargs)
    assert slow._kernel is None and fast._kernel is not None
    return slow, fast


@pytest.mark.parametrize("with_dictionary", [False, True])
def test_mixer_steps_match_numpy_exactly(monkeypatch, with_dictionary):
    text = english_text()
    history, dictionary = mixing.History(), None
    history.extend(text[:30000])
    if with_dictionary:
        dictionary = mixing.History()
        dictionary.extend(text[-20000:])
    n, sizes = 700, [700, 700, 300, 650, 1]                 # lanes of different lengths end at different steps
    data = np.zeros((len(sizes), n), dtype=np.int64)
    for i, size in enumerate(sizes):
        data[i, :size] = np.frombuffer(text[30000 + 997 * i:][:size], dtype=np.uint8)
    neural = np.random.default_rng(0).integers(1, 3000, (len(sizes), n, 256))
    slow, fast = mixers(monkeypatch, sizes, history, None, dictionary)
    for t in range(n):
        np.testing.assert_array_equal(fast.mix(neural[:, t]), slow.mix(neural[:, t]), err_msg=f"step {t}")
        slow.update(data[:, t])
        fast.update(data[:, t])
    for name in ("weights", "geo_weights", "blend", "ptr", "len", "hits", "tries", "match_table", "hist"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name), err_msg=name)
    for name in slow.final:
        np.testing.assert_array_equal(fast.final[name], slow.final[name], err_msg=f"final {name}")
    assert (fast.final["blend"] != slow.blend).any()        # the short lanes' snapshots are not the end state


@pytest.mark.parametrize("kind", ["text", "audio", "image"])
def test_archives_are_the_same_with_and_without_kernels(trained_model, monkeypatch, kind):
    cm = bytezip.coding_model(trained_model)
    data = {"text": english_text()[:12000], "audio": wav_bytes(0.2), "image": photo(h=40).tobytes()}[kind]
    fast = bytezip.Compressor(model=cm, chunk_size=256).compress(data)
    with monkeypatch.context() as m:
        m.setattr(kernels, "LIB", None)
        slow = bytezip.Compressor(model=cm, chunk_size=256).compress(data)
        assert bytezip.Decompressor(model=cm, lanes=7).decompress(fast) == data
    assert fast == slow
    assert fmt.MIXED in [c.codec for c in bytezip.read_info(io.BytesIO(fast)).chunks]
    assert bytezip.Decompressor(model=cm).decompress(slow) == data
