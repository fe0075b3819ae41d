"""User dictionaries (issue 22): `bytezip --train-dict`, `-D`, `Compressor/Decompressor(dictionary=...)`."""
import io
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import zstandard
from click.testing import CliRunner

from bytezip import Compressor, Decompressor, userdict
from bytezip import format as fmt
from bytezip.cli import cli
from bytezip.codec import read_info
from bytezip.format import FormatError, ModelError
from conftest import one_error_line

ROOT = Path(__file__).resolve().parent.parent


def records(n: int, seed: int = 0) -> list[bytes]:
    """Small similar JSON records (log-like events), made up here for the fast tests."""
    g = random.Random(seed)
    users = ["alice", "bob", "carol", "dave", "erin", "frank"]
    actions = ["login", "logout", "upload", "download", "delete", "share"]
    out = []
    for i in range(n):
        rec = {"id": 1000 + i, "user": g.choice(users), "action": g.choice(actions),
               "status": g.choice(["ok", "ok", "ok", "denied"]), "bytes": g.randrange(0, 1 << 20),
               "client": {"agent": "bytezip-test/1.0", "ip": f"10.0.{g.randrange(256)}.{g.randrange(256)}"}}
        out.append((json.dumps(rec) + "\n").encode())
    return out


def bz(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def tiny_dict(tmp_path_factory, trained_model):
    """The tiny test model saved as a model, and a dictionary for it trained on 40 records."""
    from bytezip.model import save_model
    d = tmp_path_factory.mktemp("userdict")
    prefix = str(d / "tiny")
    save_model(trained_model, prefix, extra={"name": "tiny-test"})
    ud = userdict.train(records(40, seed=1), model=prefix, weight_bytes=2048)
    path = d / "records.dict"
    ud.save(path)
    return prefix, ud, path


def test_dictionary_file(tiny_dict, tmp_path):
    prefix, ud, path = tiny_dict
    back = userdict.load(path)
    assert back.digest == ud.digest and back.data == ud.data and back.model_id == "tiny-test"
    assert set(back.weights) == set(userdict.SHAPES)          # the mixer's start weights were learnt and kept
    assert back.data == b"".join(records(40, seed=1))        # small enough: every record, in order
    blob = path.read_bytes()
    for bad, what in ((b"xx" + blob[2:], "bad magic"), (blob[:4] + b"\x07" + blob[5:], "version"),
                      (blob[:-3], "corrupted")):
        (tmp_path / "bad").write_bytes(bad)
        with pytest.raises(userdict.DictionaryError, match=what):
            userdict.load(tmp_path / "bad")


def test_choose_dedups_and_caps():
    samples = [bytes([65 + i % 7]) * 100 for i in range(50)]        # 7 distinct samples
    assert userdict.choose(samples) == b"".join(samples[:7])
    many = [bytes([i]) * 1000 for i in range(100)]
    data = userdict.choose(many, max_size=10_000)
    assert len(data) == 10_000 and data[:1000] != data[-1000:]      # evenly across, not the first ten
    assert set(data[::1000]) == set(range(9, 100, 10))
    with pytest.raises(userdict.DictionaryError):
        userdict.choose([b"", b""])


def test_library_round_trip_and_header(tiny_dict):
    prefix, ud, path = tiny_dict
    data = records(3, seed=7)[2]
    blob = Compressor(model=prefix, dictionary=ud).compress(data)
    info = read_info(io.BytesIO(blob))
    assert info.header.user_digest == ud.digest and not info.header.model_id   # the digest, no model fields
    assert blob[5] & fmt.FLAG_USER_DICT and ud.digest in blob[:32]
    assert len(info.header.to_bytes()) == 18                        # magic..signal + 8-byte digest
    assert Decompressor(model=prefix, dictionary=path).decompress(blob) == data
    assert Decompressor(model=prefix, dictionary=ud).decompress(blob) == data
    with pytest.raises(ModelError, match=f"^archive needs dictionary {ud.digest.hex()}; give it with -D$"):
        Decompressor(model=prefix).decompress(blob)
    other = userdict.train(records(10, seed=2), model=prefix, weight_bytes=0)
    with pytest.raises(ModelError, match=f"archive needs dictionary {ud.digest.hex()}, but .* is "
                                         f"{other.digest.hex()}"):
        Decompressor(model=prefix, dictionary=other).decompress(blob)
    # a longer input in several rounds, and the archive's own end record and checksum
    long = b"".join(records(60, seed=3))
    c = Compressor(model=prefix, dictionary=ud, chunk_size=256, round_chunks=2)
    blob = c.compress(long)
    assert len(read_info(io.BytesIO(blob)).chunks) > 4
    assert Decompressor(model=prefix, dictionary=ud).decompress(blob) == long


def test_dictionary_needs_its_model_and_history(tiny_dict, random_model):
    prefix, ud, path = tiny_dict
    with pytest.raises(ModelError, match="dictionary was made for model 'tiny-test'"):
        Compressor(model=random_model, dictionary=ud)
    with pytest.raises(fmt.BytezipError, match="shared history"):
        Compressor(model=prefix, dictionary=ud, history=False)
    with pytest.raises(fmt.BytezipError, match="level 1"):
        Compressor(model=prefix, dictionary=ud, level=1)


def test_format_rules():
    h = fmt.Header(4096, round_chunks=1, user_digest=b"\1" * 8)
    head = h.to_bytes()
    blob = fmt.archive_bytes(h, [(fmt.RAW, b"abc", b"abc")])
    assert fmt.Reader(io.BytesIO(blob)).header().user_digest == b"\1" * 8
    v8 = head[:4] + b"\x08" + head[5:]
    with pytest.raises(FormatError, match="unknown flags 0x02"):
        fmt.Reader(io.BytesIO(v8)).header()
    no_history = head[:8] + b"\0" + head[9:]                         # round_chunks 0
    with pytest.raises(FormatError, match="user dictionary without a shared history"):
        fmt.Reader(io.BytesIO(no_history)).header()
    # an archive with flag 0x02 but no dictionary given: refused before anything is decoded
    with pytest.raises(ModelError, match="archive needs dictionary 0101010101010101; give it with -D"):
        Decompressor().decompress(blob)


def test_cli_round_trip_and_refusals(tiny_dict, tmp_path):
    prefix, ud, _ = tiny_dict
    train, work = tmp_path / "train", tmp_path / "work"
    train.mkdir(), work.mkdir()
    for i, r in enumerate(records(30, seed=4)):
        (train / f"r{i:03}.json").write_bytes(r)
    names = []
    for i, r in enumerate(records(3, seed=5)):
        (work / f"x{i}.json").write_bytes(r)
        names.append(work / f"x{i}.json")
    dict_path = tmp_path / "my.dict"
    r = bz("--train-dict", train, "-o", dict_path, "--model", prefix)
    assert r.exit_code == 0, r.output
    assert "dictionary" in r.stderr and dict_path.is_file()
    r = bz("--train-dict", train, "-o", dict_path, "--model", prefix)            # exists: not overwritten
    assert r.exit_code == 1
    one_error_line(r, "already exists")
    r = bz("-D", dict_path, "--model", prefix, *names)
    assert r.exit_code == 0, r.output
    digest = userdict.load(dict_path).digest
    for n in names:
        assert read_info(open(f"{n}.bzp", "rb")).header.user_digest == digest
    r = bz("-d", "-c", "-D", dict_path, "--model", prefix, f"{names[0]}.bzp")
    assert r.exit_code == 0 and r.stdout_bytes == names[0].read_bytes()
    out = tmp_path / "back.json"
    r = bz("-dD", dict_path, "--model", prefix, "-o", out, f"{names[1]}.bzp")
    assert r.exit_code == 0 and out.read_bytes() == names[1].read_bytes()
    # missing and wrong dictionaries: one line, exit 1, nothing written
    r = bz("-d", "-c", "--model", prefix, f"{names[0]}.bzp")
    assert r.exit_code == 1 and not r.stdout_bytes
    one_error_line(r, f"archive needs dictionary {digest.hex()}; give it with -D")
    other = tmp_path / "other.dict"
    ud.save(other)
    r = bz("-t", "-D", other, "--model", prefix, f"{names[0]}.bzp")
    assert r.exit_code == 1
    one_error_line(r, f"archive needs dictionary {digest.hex()}", ud.digest.hex())
    r = bz("-d", "-c", "-D", tmp_path / "nothing.dict", f"{names[0]}.bzp")
    assert r.exit_code == 1
    one_error_line(r, "cannot read dictionary")
    # --rm verifies the new archive (with the dictionary) before removing the input
    kept = names[2].read_bytes()
    r = bz("-f", "--rm", "-D", dict_path, "--model", prefix, names[2])
    assert r.exit_code == 0, r.output
    assert not names[2].exists()
    r = bz("-d", "-D", dict_path, "--model", prefix, f"{names[2]}.bzp")
    assert r.exit_code == 0 and names[2].read_bytes() == kept
    r = bz("-D", dict_path, "--model", "none", "-c", names[0])
    assert r.exit_code == 1
    one_error_line(r, "needs the model")


def graph_break_records() -> dict:
    import torch
    path = Path(torch.__file__).parent / "_dynamo" / "graph_break_registry.json"
    if not path.is_file():
        pytest.skip(f"{path} is not in this torch")
    return json.loads(path.read_text())


def zstd_dict_total(train: list[bytes], files: list[bytes]) -> int:
    """zstd -19 -D with zstd's own trained dictionary (its CLI defaults: checksum, dictionary id)."""
    d = zstandard.train_dictionary(112640, train)
    z = zstandard.ZstdCompressor(level=19, dict_data=d, write_checksum=True)
    return sum(len(z.compress(f)) for f in files)


def test_dictionary_beats_zstd_on_small_json_records():
    """20 real JSON records, one file each, against zstd -19 -D (records kept out of the 200 + 200 that
    benchmarks/userdict_bench.py uses: its shuffle's last 117, 60 to train on and 20 to measure)."""
    data = graph_break_records()
    keys = sorted(data)
    random.Random(22).shuffle(keys)
    rest = keys[400:]
    as_file = lambda k: (json.dumps({k: data[k]}) + "\n").encode()
    train, files = [as_file(k) for k in rest[:60]], [as_file(k) for k in rest[60:80]]
    ud = userdict.train(train, weight_bytes=4096)
    c = Compressor(dictionary=ud, solid=True)
    blobs = [c.compress(f) for f in files]
    ours, theirs = sum(map(len, blobs)), zstd_dict_total(train, files)
    print(f"20 records, {sum(map(len, files))} bytes: bytezip -D {ours}, zstd -19 -D {theirs}")
    assert ours <= theirs
    d = Decompressor(dictionary=ud)
    assert [d.decompress(b) for b in blobs[:3]] == files[:3]


@pytest.mark.slow
def test_headline_200_records(tmp_path):
    """The benchmark itself: 200 records one file each, bytezip -D no larger than zstd -19 -D in total."""
    if shutil.which("zstd") is None:
        pytest.skip("no zstd command")
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "userdict_bench.py"), "--workdir", str(tmp_path)],
                       capture_output=True, text=True)
    print(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("version, folder", [(1, "v10"), (2, "v11")])
def test_older_dictionaries_still_decode_and_code(version, folder):
    """A version-1 dictionary (made by format 10's bytezip: geo weights for `predictors.INPUTS_V10`) and a
    version-2 one (format 11's: `predictors.INPUTS_V11`) decode their archives (tests/archives/v10 and v11,
    `test_codec` samples too) and code an archive of today's format: the mixer starts from the weights of the
    inputs it shares with the dictionary (`predictors.carry_over`)."""
    samples = ROOT / "tests" / "archives" / folder
    old = userdict.load(samples / "records.dict")
    assert old.version == version
    assert old.weights["geo_weights"].shape[1] == len(userdict.weight_inputs(version)) < len(userdict.weight_inputs())
    assert userdict.from_bytes(old.to_bytes()).digest == old.digest               # re-saved, still its version
    record = (samples / "record.json").read_bytes()
    assert Decompressor(dictionary=old).decompress((samples / "record.json.bzp").read_bytes()) == record
    blob = Compressor(dictionary=old).compress(record)
    assert blob[4] == fmt.VERSION and Decompressor(dictionary=old).decompress(blob) == record
