"""Mixing the model with match and context models: exact on both sides, and never worse than neural alone."""
import io

import numpy as np
import pytest

import bytezip
from bytezip import codec, format as fmt
from bytezip.mixing import History, Mixer, mix_round, mixed_frequencies
from conftest import english_text


def code_bits(freqs: np.ndarray, chunk: bytes) -> float:
    x = np.frombuffer(chunk, dtype=np.uint8)
    return float(-np.log2(freqs[np.arange(len(x)), x] / freqs.sum(-1)).sum())


def test_mixing_wins_on_repeats_and_round_trips(trained_model):
    data = (b"id,name,score\n" + b"".join(b"%d,user%d,%d\n" % (i, i % 7, i % 3) for i in range(400)))[:4000]
    data += english_text()[:2000]
    cm = bytezip.coding_model(trained_model)
    with_mix = bytezip.Compressor(model=cm, solid=False).compress(data)
    without = bytezip.Compressor(model=cm, mixing=False, solid=False).compress(data)
    used = [r.codec for r in bytezip.read_info(io.BytesIO(with_mix)).chunks]
    assert fmt.MIXED in used and len(with_mix) < len(without)
    assert fmt.MIXED not in [r.codec for r in bytezip.read_info(io.BytesIO(without)).chunks]
    for lanes in (1, 4, 256):
        assert bytezip.Decompressor(model=cm, lanes=lanes).decompress(with_mix) == data


def test_mixed_frequencies_independent_of_batch(trained_model):
    cm = bytezip.coding_model(trained_model)
    text = english_text()
    chunks = [text[i * 256:(i + 1) * 256] for i in range(3)] + [b"xy" * 50]
    nn = codec.neural_frequencies(cm, chunks)
    together = mixed_frequencies(nn, chunks)
    for i, c in enumerate(chunks):
        alone = mixed_frequencies([nn[i]], [c])[0]
        assert np.array_equal(alone, together[i])


def test_decoder_side_mixer_matches_encoder(trained_model):
    """Stepping the Mixer byte by byte (as the decoder does) reproduces the encoder's frequencies."""
    cm = bytezip.coding_model(trained_model)
    chunk = english_text()[3000:3256]
    nn = codec.neural_frequencies(cm, [chunk])[0]
    enc = mixed_frequencies([nn], [chunk])[0]
    mixer = Mixer([len(chunk)])
    for t, b in enumerate(chunk):
        assert np.array_equal(mixer.mix(nn[t:t + 1])[0], enc[t])
        mixer.update(np.array([b]))


def test_mixing_helps_repetitive_text(trained_model):
    cm = bytezip.coding_model(trained_model)
    chunk = (b"the quick brown fox jumps over the lazy dog. " * 6)[:256]
    nn = codec.neural_frequencies(cm, [chunk])[0]
    mixed = mixed_frequencies([nn], [chunk])[0]
    assert code_bits(mixed, chunk) < 0.7 * code_bits(nn, chunk)


def test_history_rounds_round_trip_at_any_lanes(trained_model):
    """Rounds of 2 chunks: later chunks read the earlier rounds; decoding follows the archive's rounds
    whatever lanes the decoder was given, and the history makes the repeats cheap."""
    cm = bytezip.coding_model(trained_model)
    data = english_text()[:700] * 3
    with_history = bytezip.Compressor(model=cm, lanes=2, solid=False).compress(data)
    without = bytezip.Compressor(model=cm, history=False, solid=False).compress(data)
    info = bytezip.read_info(io.BytesIO(with_history))
    assert info.header.round_chunks == 2 and bytezip.read_info(io.BytesIO(without)).header.round_chunks == 0
    assert fmt.MIXED in [r.codec for r in info.chunks] and len(with_history) < 0.7 * len(without)
    for lanes in (1, 3, 256):
        assert bytezip.Decompressor(model=cm, lanes=lanes).decompress(with_history) == data


def test_history_decoder_side_matches_encoder(trained_model):
    """A mixer reading a history, stepped byte by byte, reproduces the encoder's frequencies; the history
    learnt in two pieces equals the history learnt at once."""
    cm = bytezip.coding_model(trained_model)
    text = english_text()
    past, chunk = text[:5000], text[2000:2256]
    whole, pieces = History(), History()
    whole.extend(past)
    pieces.extend(past[:1234])
    pieces.extend(past[1234:])
    assert np.array_equal(whole.data, pieces.data) and np.array_equal(whole.match_table, pieces.match_table)
    assert all(np.array_equal(a, b) for a, b in zip(whole.counts, pieces.counts))
    nn = codec.neural_frequencies(cm, [chunk])[0]
    enc = mixed_frequencies([nn], [chunk], whole)[0]
    mixer = Mixer([len(chunk)], pieces)
    for t, b in enumerate(chunk):
        assert np.array_equal(mixer.mix(nn[t:t + 1])[0], enc[t])
        mixer.update(np.array([b]))
    alone = mixed_frequencies([nn], [chunk])[0]
    assert code_bits(enc, chunk) < 0.5 * code_bits(alone, chunk)      # the chunk repeats the history


def test_round_chunks_follow_the_input_size(random_model):
    comp = bytezip.Compressor(model=random_model)
    n = comp.chunk_size
    assert comp.round_chunks_for(n) == codec.MIN_ROUND_CHUNKS == 1
    assert comp.round_chunks_for(3 * n * codec.ROUNDS) == 3
    assert comp.round_chunks_for(40 * n * codec.ROUNDS) == 40
    assert comp.round_chunks_for(10 ** 9) == comp.round_chunks_for(None) == codec.MAX_ROUND_CHUNKS
    assert bytezip.Compressor(model=random_model, history=False).round_chunks_for(n) == 0
    assert bytezip.Compressor(model=random_model, mixing=False).round_chunks_for(n) == 0


def test_a_priming_dictionary_helps_small_inputs_and_is_checked(trained_model, tmp_path):
    """A model shipped with a `.dict.xz` codes a small input that resembles the dictionary in fewer bytes;
    the archive names the dictionary, and a model without it (or with another) refuses to decode."""
    import lzma
    from bytezip.model import save_model
    text = english_text()
    for name in ("plain", "primed"):
        save_model(trained_model, str(tmp_path / name), extra={"name": "tiny"})
    (tmp_path / "primed.dict.xz").write_bytes(lzma.compress(text[:20000]))
    plain, primed = bytezip.coding_model(str(tmp_path / "plain")), bytezip.coding_model(str(tmp_path / "primed"))
    assert primed.dictionary is not None and plain.dictionary is None and primed.digest == plain.digest
    data = text[30000:30900]
    blob = bytezip.Compressor(model=primed).compress(data)
    assert bytezip.read_info(io.BytesIO(blob)).header.dictionary_digest == primed.dictionary_digest
    assert len(blob) < 0.95 * len(bytezip.Compressor(model=plain).compress(data))
    assert bytezip.Decompressor(model=primed, lanes=3).decompress(blob) == data
    with pytest.raises(fmt.ModelError, match="dictionary"):
        bytezip.Decompressor(model=plain).decompress(blob)
    no_mixing = bytezip.Compressor(model=primed, mixing=False).compress(data)
    assert not bytezip.read_info(io.BytesIO(no_mixing)).header.dictionary_digest
    assert bytezip.Decompressor(model=plain).decompress(no_mixing) == data


def test_geometric_stage_tables_scope_and_gain(trained_model, monkeypatch):
    """The geometric mix's integer tables are bytezip's own, it runs only where no audio predictor (nor,
    before format 14, an image predictor) does, the priming dictionary's text only where neither does, and on
    text the mean of both mixes codes below the linear mix alone."""
    from bytezip import mixing
    from bytezip.predictors import INPUTS, INPUTS_V13
    log2, exp2 = mixing._log_exp_tables()
    assert log2[1] == 0 and log2[2] == mixing.LOG_SCALE and log2[mixing.ONE] == 16 * mixing.LOG_SCALE
    assert exp2[0] == mixing.ONE and exp2[-1] == 1 and np.all(np.diff(exp2) <= 0)
    dictionary = mixing.History()
    for layout, inputs, geometric in ((bytezip.pcm.PcmLayout(1, 0), INPUTS, False),
                                      (bytezip.image.ImageLayout(8, 3), INPUTS_V13, False),
                                      (bytezip.image.ImageLayout(8, 3), INPUTS, True)):
        m = Mixer([8], signal=mixing.signal_model(layout, np.zeros(1), 8, 0, inputs=inputs), dictionary=dictionary,
                  inputs=inputs)
        assert m.geometric == geometric and m.sources[1] is None
    assert Mixer([8]).geometric and Mixer([8], dictionary=dictionary).sources[1] is dictionary
    cm = bytezip.coding_model(trained_model)
    text = english_text()
    n = cm.context
    chunks = [text[i * n:(i + 1) * n] for i in range(8)]
    nn = codec.neural_frequencies(cm, chunks)
    both = sum(map(code_bits, mixed_frequencies(nn, chunks), chunks))
    init = Mixer.__init__

    def linear_only(self, *a, **kw):
        init(self, *a, **kw)
        self.geometric = False
        self._kernel = self._kernel and self._kernel_state()
    monkeypatch.setattr(Mixer, "__init__", linear_only)
    linear = sum(map(code_bits, mixed_frequencies(nn, chunks), chunks))
    assert both < linear          # short chunks of a tiny model; 2-7% on held-out data with the shipped one


def test_weights_carry_from_round_to_round(trained_model):
    """Each lane's weights are kept as they were at its chunk's end (a short last chunk is not moved by the
    padding after it), the next round starts from the mean over the mixed lanes, and a round holding a chunk
    stored otherwise (which the decoder never mixes) still decodes."""
    cm = bytezip.coding_model(trained_model)
    text = english_text()
    history, n = History(), cm.context
    history.extend(text[:3000])
    chunks = [text[3000:3000 + n], text[3000 + n:3000 + 2 * n], text[3000 + 2 * n:3000 + 2 * n + n // 3]]
    nn = codec.neural_frequencies(cm, chunks)
    _, mixer = mix_round(nn, chunks, history)
    for i, c in enumerate(chunks):
        _, alone = mix_round([nn[i]], [c], history)
        for name, final in mixer.final.items():
            assert np.array_equal(final[i], alone.final[name][0])
    history.learn_weights([(mixer, np.array([True, False, True]))])
    carried = history.carried
    assert np.array_equal(carried["geo_weights"], (mixer.final["geo_weights"][[0, 2]].sum(0)) // 2)
    assert np.array_equal(carried["blend"], (mixer.final["blend"][[0, 2]].sum(0)) // 2)
    nxt = Mixer([10], history)
    assert np.array_equal(nxt.geo_weights[0], carried["geo_weights"]) and np.array_equal(nxt.blend[0], carried["blend"])
    assert not np.array_equal(nxt.geo_weights[0], Mixer([10]).geo_weights[0])      # it learnt something
    data = text[:n] + bytes(np.random.default_rng(5).integers(0, 256, n, dtype=np.uint8)) + text[n:4 * n]
    blob = bytezip.Compressor(model=cm, round_chunks=2).compress(data)
    used = [r.codec for r in bytezip.read_info(io.BytesIO(blob)).chunks]
    assert used[1] == fmt.RAW and used.count(fmt.MIXED) >= 2
    assert bytezip.Decompressor(model=cm, lanes=2).decompress(blob) == data


def test_match_model_over_the_dictionary(trained_model):
    """Text that the priming dictionary holds is predicted by the third match model; never for audio."""
    text = english_text()
    dictionary = History()
    dictionary.extend(text[:5000])
    chunk = np.frombuffer(text[2000:2300], dtype=np.uint8)
    mixer, hits = Mixer([len(chunk)], dictionary=dictionary), 0
    for t, b in enumerate(chunk):
        mixer.mix(np.ones((1, 256), dtype=np.int64))
        hits += int(mixer._has[2, 0] and mixer._predicted[2, 0] == b)
        mixer.update(np.array([b]))
    assert hits > 0.9 * len(chunk)
    pcm = bytezip.mixing.signal_model(bytezip.pcm.PcmLayout(1, 0), np.zeros(1), 8, 0)
    assert Mixer([8], signal=pcm, dictionary=dictionary).sources[1] is None


def test_every_format_steps_its_signal_predictor_in_c():
    """The C step loops (csrc/steps.c) run the sample and pixel predictors of every format's inputs; one they do
    not know sends a round to the Python loop, byte by byte (format 13's audio predictor did, before its entry)."""
    from bytezip.image import ImageLayout
    from bytezip.pcm import PcmLayout
    from bytezip.predictors import INPUTS_V10, INPUTS_V11, INPUTS_V12, INPUTS_V13
    for inputs in (bytezip.predictors.INPUTS, INPUTS_V13, INPUTS_V12, INPUTS_V11, INPUTS_V10):
        for layout in (PcmLayout(2, 44), ImageLayout(64, 3)):
            signal = bytezip.mixing.signal_model(layout, np.array([0, 4096]), 4096, 2, inputs=inputs)
            assert Mixer([4096, 4096], signal=signal, inputs=inputs).kernel_steps() is not None, (layout, inputs)
