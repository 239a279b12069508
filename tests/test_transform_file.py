"""The transform file: plain-numpy loadable, verified, versioned."""
import json
import zipfile

import numpy as np
import pytest

from procalign import ProcrustesAligner, load_transform
from procalign.errors import TransformFileError
from procalign.transform_file import FORMAT_VERSION, array_checksum
from conftest import paired_data


@pytest.fixture
def saved(tmp_path, rng):
    x, y, _ = paired_data(rng, shift=1.0)
    a = ProcrustesAligner().fit(x, y)
    path = tmp_path / "t.npz"
    a.save(path, source={"name": "old"}, target={"name": "new"})
    return path, a, x


def test_round_trip(saved):
    path, a, x = saved
    b = ProcrustesAligner.load(path)
    np.testing.assert_array_equal(b.transform(x), a.transform(x))
    meta = b.transform_.metadata
    assert meta["format_version"] == FORMAT_VERSION
    assert (meta["source"], meta["target"]) == ({"name": "old", "dim": 16}, {"name": "new", "dim": 16})
    assert meta["options"]["centre"] is True and meta["anchors"] == 500


def test_loads_with_plain_numpy_and_no_pickle(saved):
    path, a, _ = saved
    with np.load(path, allow_pickle=False) as z:
        assert set(z.files) == {"matrix", "source_mean", "target_mean", "scale", "metadata"}
        np.testing.assert_array_equal(z["matrix"], a.transform_.matrix)
        meta = json.loads(str(z["metadata"]))
        assert meta["checksum"] == array_checksum({k: z[k] for k in ("matrix", "source_mean", "target_mean", "scale")})


def _rewrite(path, **changes):
    with np.load(path, allow_pickle=False) as z:
        members = {k: z[k] for k in z.files}
    members.update(changes)
    np.savez(path, **members)


def test_tampered_arrays_fail_checksum(saved):
    path, a, _ = saved
    m = a.transform_.matrix.copy()
    m[0, 0] += 1e-9
    _rewrite(path, matrix=m)
    with pytest.raises(TransformFileError, match="checksum mismatch"):
        load_transform(path)


def test_newer_format_version_is_refused(saved):
    path, *_ = saved
    with np.load(path) as z:
        meta = json.loads(str(z["metadata"]))
    meta["format_version"] = FORMAT_VERSION + 1
    _rewrite(path, metadata=np.asarray(json.dumps(meta)))
    with pytest.raises(TransformFileError, match="newer than this procalign reads"):
        load_transform(path)


def test_corrupt_file_is_refused(saved):
    path, *_ = saved
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(TransformFileError, match="not a readable transform file"):
        load_transform(path)


def test_missing_member_is_refused(saved, tmp_path):
    path, *_ = saved
    with np.load(path) as z:
        np.savez(tmp_path / "partial.npz", matrix=z["matrix"], metadata=z["metadata"])
    with pytest.raises(TransformFileError, match="missing member"):
        load_transform(tmp_path / "partial.npz")


def test_file_is_an_uncompressed_zip_of_npy(saved):
    path, *_ = saved
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == sorted(f"{k}.npy" for k in ("matrix", "source_mean", "target_mean", "scale", "metadata"))
