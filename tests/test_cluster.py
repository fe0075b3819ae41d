"""The cluster path: a local Dask cluster of 2 workers compresses a folder of mixed files and a 32 MB file,
and the archives decode with the plain command line; they are the archives `--frame-size` writes here."""
import os
import subprocess
import sys

import pytest

import bytezip
from conftest import english_text, wav_bytes

pytest.importorskip("distributed")
from bytezip import cluster  # noqa: E402


def unpack(path) -> bytes:
    return subprocess.run([sys.executable, "-m", "bytezip", "-d", "-c", str(path)], capture_output=True,
                          check=True).stdout


def test_a_local_cluster_compresses_a_folder_and_a_large_file(tmp_path, model_files):
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    inputs = {folder / "notes.txt": english_text()[:3000], folder / "sub" / "tone.wav": wav_bytes(0.05),
              folder / "random.bin": os.urandom(3000), folder / "empty": b""}
    for path, data in inputs.items():
        path.write_bytes(data)
    big = tmp_path / "big.bin"
    block = english_text()
    big.write_bytes(b"".join(block[i % 997:] for i in range(-(-(32 << 20) // len(block)) + 1))[:32 << 20])
    with cluster.client(workers=2) as dask:
        check_cluster(dask, folder, inputs, big, model_files)


def check_cluster(dask, folder, inputs, big, model_files):
    done = cluster.compress([folder], dask=dask, frame_size=2000, model=model_files)
    assert sorted(p.name for p, _, _ in done) == ["empty.bzp", "notes.txt.bzp", "random.bin.bzp", "tone.wav.bzp"]
    for path, data in inputs.items():
        archive = path.with_name(path.name + ".bzp")
        assert archive.read_bytes() == bytezip.compress(data, model=model_files, frame_size=2000)
        assert subprocess.run([sys.executable, "-m", "bytezip", "-d", "-c", "--model", model_files, str(archive)],
                              capture_output=True, check=True).stdout == data
    [(archive, size, _)] = cluster.compress([big], dask=dask, neural=False)    # 4 frames of 8 MiB
    assert size == 32 << 20 and bytezip.read_info(open(archive, "rb")).frames == 4
    assert unpack(archive) == big.read_bytes()
    big.unlink()
    [(out, _, size)] = cluster.decompress([archive], dask=dask)
    assert out == big and size == 32 << 20
    with pytest.raises(bytezip.BytezipError, match="already exists"):
        cluster.compress([big], dask=dask, neural=False)
    notes = folder / "notes.txt"              # a scheduler by its address, as a multi-node cluster is given
    [(out, _, _)] = cluster.compress([notes], address=dask.scheduler.address, force=True, model=model_files)
    assert out.read_bytes() == bytezip.compress(inputs[notes], model=model_files, frame_size=cluster.FRAME_SIZE)
