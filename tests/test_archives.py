"""Archives read from their headers (pipeline/archives.py): honest files read exactly as
NumPy and Keras would, with only the rows a run uses; hostile ones refused before reading."""
from __future__ import annotations

import tracemalloc
import zipfile

import numpy as np
import pytest

from hostile.bombs import npy_header, stored, write_sparse_npy_zip, write_zip
from pipeline.archives import ArchiveRefused, check_h5, check_members, climbs_out, open_zip, read_npy_header, read_rows

CONFIG = """\
source:
  factory: examples.affine:build
inputs:
  - {name: x, shape: [null, 4], dtype: float32}
outputs: [y]
data:
  npz: data.npz
  samples: 16
%s
targets: [savedmodel]
"""


def _parity_data(tmp_path, labels: bool = False):
    from pipeline.config import load_config
    from pipeline.stages.data import make_parity_data
    from targets import REGISTRY

    path = tmp_path / "m.yaml"
    path.write_text(CONFIG % ("  labels: labels" if labels else ""))
    return make_parity_data(load_config(path, REGISTRY))


def test_a_4_gib_array_is_read_16_rows_deep(tmp_path):
    """An uncompressed 4 GiB array (a sparse file here) costs the 16 rows a run uses."""
    write_sparse_npy_zip(tmp_path / "data.npz", "x.npy", npy_header((1 << 28, 4)), 4 << 30)
    tracemalloc.start()
    try:
        data = _parity_data(tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert data.pool["x"].shape == (16, 4) and not data.pool["x"].any()
    assert peak < 16 << 20, f"{peak / 2**20:.1f} MiB traced"


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_honest_files_read_the_leading_rows_exactly(tmp_path, save):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 4)).astype(np.float32)
    labels = rng.integers(0, 3, size=1000)
    save(tmp_path / "data.npz", x=x, labels=labels, unused=np.zeros((10, 10)))
    data = _parity_data(tmp_path, labels=True)
    np.testing.assert_array_equal(data.pool["x"], x[:16])
    np.testing.assert_array_equal(data.labels, labels[:16])


def test_a_fortran_order_array_is_read_whole_and_cut(tmp_path):
    x = np.asfortranarray(np.arange(400, dtype=np.float32).reshape(100, 4))
    np.savez(tmp_path / "data.npz", x=x)
    with zipfile.ZipFile(tmp_path / "data.npz") as archive:
        info = archive.getinfo("x.npy")
        header = read_npy_header(archive, info)
        assert header.fortran_order and header.shape == (100, 4)
        np.testing.assert_array_equal(read_rows(archive, info, header, 7), x[:7])


def test_a_header_must_agree_with_the_member_size(tmp_path):
    write_zip(tmp_path / "d.npz", [stored("x.npy", npy_header((64, 4)) + bytes(64 * 16 - 1))])
    with zipfile.ZipFile(tmp_path / "d.npz") as archive:
        with pytest.raises(ArchiveRefused, match=r"declares \[64, 4\] float32 \(1,024 bytes of data\), but the archive holds 1,023 bytes"):
            read_npy_header(archive, archive.getinfo("x.npy"))


def test_a_pickled_header_is_never_evaluated(tmp_path):
    text = b"{'descr': __import__('os').getcwd(), 'fortran_order': False, 'shape': (1,), }"
    write_zip(tmp_path / "d.npz", [stored("x.npy", b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text)])
    with zipfile.ZipFile(tmp_path / "d.npz") as archive:
        with pytest.raises(ArchiveRefused, match="unreadable .npy header"):
            read_npy_header(archive, archive.getinfo("x.npy"))


@pytest.mark.parametrize("name, out", [
    ("model.weights.h5", False), ("assets/vocab.txt", False), ("a..b/c", False),
    ("../x", True), ("assets/../../x", True), ("/etc/passwd", True), ("..\\x", True), ("C:/x", True),
])
def test_member_names_that_climb_out(name, out):
    assert climbs_out(name) is out


def test_a_keras_like_archive_passes_and_a_member_count_bomb_does_not(tmp_path):
    write_zip(tmp_path / "m.keras", [stored("metadata.json", b"{}"), stored("config.json", b"{}"), stored("model.weights.h5", bytes(4096))])
    with open_zip(tmp_path / "m.keras") as archive:
        check_members(archive, 1 << 30, ".keras archive")
    # The end record says 2**40 members: refused before zipfile builds a list of them.
    raw = bytearray((tmp_path / "m.keras").read_bytes())
    at = raw.rfind(b"PK\x06\x06")
    raw[at + 24:at + 40] = (1 << 40).to_bytes(8, "little") * 2
    (tmp_path / "many.keras").write_bytes(bytes(raw))
    with pytest.raises(ArchiveRefused, match=r"declares 1,099,511,627,776 members"):
        open_zip(tmp_path / "many.keras", ".keras archive")


def test_h5_weights_kept_in_other_files_are_refused(tmp_path):
    import h5py

    honest = tmp_path / "honest.h5"
    with h5py.File(honest, "w") as f:
        f.create_group("model_weights").create_dataset("kernel:0", data=np.ones((64, 64), np.float32), compression="gzip")
    check_h5(honest, 1 << 30)
    with h5py.File(tmp_path / "linked.h5", "w") as f:
        f["model_weights"] = h5py.ExternalLink(str(honest), "/model_weights")
    with pytest.raises(ArchiveRefused, match=r"'/model_weights' is a link to .*honest.h5:/model_weights, another file"):
        check_h5(tmp_path / "linked.h5", 1 << 30)
    (tmp_path / "secret.bin").write_bytes(bytes(256))
    with h5py.File(tmp_path / "external.h5", "w") as f:
        f.create_dataset("kernel:0", shape=(64,), dtype="float32", external=[(str(tmp_path / "secret.bin"), 0, 256)])
    with pytest.raises(ArchiveRefused, match=r"dataset '/kernel:0' keeps its data in other files .*secret.bin"):
        check_h5(tmp_path / "external.h5", 1 << 30)


def test_compare_data_is_read_from_checked_headers(tmp_path):
    from hostile.bombs import zeros_bomb
    from pipeline.compare import _load_data
    from pipeline.errors import ModelError

    np.savez(tmp_path / "honest.npz", x=np.ones((5, 4), np.float32))
    np.testing.assert_array_equal(_load_data(tmp_path / "honest.npz")["x"], np.ones((5, 4), np.float32))
    write_zip(tmp_path / "bomb.npz", [zeros_bomb("x.npy", npy_header(((1 << 30) // 16, 4)), 1 << 30)])
    with pytest.raises(ModelError, match=r"refused data file .*bomb.npz: array 'x': 'x.npy' expands from .* to 1.0 GiB .*decompression bomb"):
        _load_data(tmp_path / "bomb.npz")
