"""`read_npz` reads what `np.savez` and `np.savez_compressed` write, byte for byte, and turns
damaged archives into one VireidError before allocating what a header claims."""

from __future__ import annotations

import numpy as np
import pytest

from vireid.errors import VireidError
from vireid.eval.npz import read_npz

ARRAYS = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.array(["x", "yz"]),
          "c": np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3)),
          "d": np.array(True)}


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_what_numpy_writes_reads_back_equal(tmp_path, save):
    path = tmp_path / "x.npz"
    save(path, **ARRAYS)
    seen = {}
    arrays = read_npz(path, tuple(ARRAYS), seen.update)
    assert sorted(seen) == sorted(ARRAYS) and seen["a"].shape == (3, 4)
    for name, array in ARRAYS.items():
        assert arrays[name].dtype == array.dtype
        np.testing.assert_array_equal(arrays[name], array)


def test_check_refuses_before_any_data_is_read(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, **ARRAYS)

    def refuse(headers):
        raise VireidError(path, f"a is {headers['a'].shape}")

    with pytest.raises(VireidError, match=r"a is \(3, 4\)"):
        read_npz(path, ("a",), refuse)


def test_a_changed_data_byte_is_damage(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, a=np.zeros(1000, dtype=np.float32))
    data = bytearray(path.read_bytes())
    data[600] ^= 0xFF  # inside a.npy's data: its CRC no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(VireidError, match="cannot read features: damaged"):
        read_npz(path, ("a",), lambda headers: None)


def test_object_arrays_are_refused_unread(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(VireidError, match="holds Python objects"):
        read_npz(path, ("a",), lambda headers: None)
