"""The transform file: plain-numpy loadable, verified, versioned."""
import json
import zipfile

import numpy as np
import pytest

from procalign import ProcrustesAligner, load_transform
from procalign.errors import TransformFileError
from procalign.cli import app
from procalign.transform_file import FORMAT_VERSION, array_checksum, sealed_checksum
from conftest import paired_data
from typer.testing import CliRunner

runner = CliRunner(env={"COLUMNS": "200"})
ARRAYS = ("matrix", "source_mean", "target_mean", "scale")


@pytest.fixture
def saved(tmp_path, rng):
    x, y, _ = paired_data(rng, shift=1.0)
    a = ProcrustesAligner(source_name="old", target_name="new").fit(x, y)
    path = tmp_path / "t.npz"
    a.save(path)
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
        assert meta["checksum"] == sealed_checksum({k: z[k] for k in ARRAYS}, meta)


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


def _edit_metadata(path, edit):
    with np.load(path) as z:
        meta = json.loads(str(z["metadata"]))
    edit(meta)
    _rewrite(path, metadata=np.asarray(json.dumps(meta)))


@pytest.mark.parametrize("edit", [
    lambda m: m["options"].update(normalize=True),
    lambda m: m.update(source=m["target"], target=m["source"]),
    lambda m: m["source"].update(name="other"),
    lambda m: m.update(anchors=1),
], ids=["options", "swapped-spaces", "renamed", "provenance"])
def test_edited_metadata_is_refused_by_apply(saved, tmp_path, edit):
    path, _, x = saved
    _edit_metadata(path, edit)
    with pytest.raises(TransformFileError, match="checksum mismatch"):
        load_transform(path)
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    r = runner.invoke(app, ["apply", str(path), str(tmp_path / "x.npy"), "-o", str(tmp_path / "out.npy")])
    assert r.exit_code == 5 and "checksum mismatch" in r.stderr, r.output
    assert not (tmp_path / "out.npy").exists()


def _as_version_1(path):
    """Rewrite a file as procalign 0.1 wrote it: no names, no method, an arrays-only checksum."""
    with np.load(path) as z:
        members = {k: z[k] for k in z.files}
    meta = json.loads(str(members["metadata"]))
    meta = {"format": meta["format"], "format_version": 1, "source": {"dim": meta["source"]["dim"]},
            "target": {"dim": meta["target"]["dim"]}, "options": meta["options"], "anchors": meta["anchors"],
            "checksum": array_checksum({k: members[k] for k in ARRAYS})}
    members["metadata"] = np.asarray(json.dumps(meta))
    np.savez(path, **members)


def test_version_1_file_still_loads_and_is_unsealed(saved, tmp_path):
    path, a, x = saved
    _as_version_1(path)
    t = load_transform(path)
    assert t.format_version == 1 and not t.sealed
    assert (t.source.name, t.target.name) == ("source", "target")
    np.testing.assert_allclose(t(x), a.transform(x))
    r = runner.invoke(app, ["inspect", str(path)])
    assert r.exit_code == 0 and "unsealed" in r.stdout, r.output
    _edit_metadata(path, lambda m: m.update(anchors=7))  # version 1 never sealed its metadata
    assert load_transform(path).provenance["anchors"] == 7
    m = t.matrix.copy()
    m[0, 0] += 1e-9
    _rewrite(path, matrix=m)
    with pytest.raises(TransformFileError, match="checksum mismatch"):
        load_transform(path)


def test_inverse_swaps_the_spaces_and_names_its_forward(saved):
    path, a, x = saved
    t = load_transform(path)
    inv = t.inverse()
    assert (inv.source, inv.target) == (t.target, t.source)
    assert inv.is_inverse and inv.inverse_of == t.checksum and not t.is_inverse
    np.testing.assert_allclose(inv(t(x)), x, atol=1e-10)


def test_inverse_round_trips_through_the_file(saved, tmp_path):
    from procalign import save_transform
    path, a, x = saved
    t = load_transform(path)
    back = load_transform(tmp_path / "inv.npz") if save_transform(t.inverse(), tmp_path / "inv.npz") else None
    assert (back.source.name, back.target.name, back.inverse_of) == ("new", "old", t.checksum)
    np.testing.assert_allclose(back(t(x)), x, atol=1e-10)


def test_non_orthogonal_matrix_with_a_recomputed_checksum_is_refused(saved):
    path, *_ = saved
    with np.load(path) as z:
        members = {k: z[k] for k in z.files}
    members["matrix"] = members["matrix"] * 1.5
    meta = json.loads(str(members["metadata"]))
    meta["checksum"] = sealed_checksum({k: members[k] for k in ARRAYS}, meta)
    members["metadata"] = np.asarray(json.dumps(meta))
    np.savez(path, **members)
    with pytest.raises(TransformFileError, match="not orthonormal"):
        load_transform(path)


# methods other than orthogonal ---------------------------------------------------------------

@pytest.fixture(params=["whitened", "affine"])
def linear_saved(request, tmp_path, rng):
    x = rng.normal(size=(400, 8)) * np.linspace(0.5, 2.0, 8) + 1.0
    y = x @ rng.normal(size=(8, 8)) + 0.1 * rng.normal(size=(400, 8))
    a = ProcrustesAligner(method=request.param, source_name="old", target_name="new").fit(x, y)
    path = tmp_path / "t.npz"
    a.save(path)
    return path, a, x, y


def test_a_linear_map_round_trips_with_its_method_and_an_exact_inverse(linear_saved, tmp_path):
    from procalign import save_transform
    path, a, x, y = linear_saved
    with np.load(path) as z:  # a general matrix: no orthonormality is asked of it
        assert np.abs(z["matrix"] @ z["matrix"].T - np.eye(8)).max() > 1e-3
    t = load_transform(path)
    assert t.method == a.method and not t.map.orthonormal and t.scale == 1.0
    np.testing.assert_array_equal(t(x), a.transform(x))
    assert t.inverse_kind == "exact (inverse matrix)" and not t.geometry["isometry"]
    np.testing.assert_allclose(t.inverse()(t(x)), x, atol=1e-9)
    save_transform(t.inverse(), tmp_path / "inv.npz")
    back = load_transform(tmp_path / "inv.npz")
    assert (back.method, back.inverse_of) == (t.method, t.checksum)
    np.testing.assert_allclose(back(t(x)), x, atol=1e-9)
    b = ProcrustesAligner.load(path)
    assert b.get_params() == a.get_params()


def _reseal(path, **changes):
    with np.load(path) as z:
        members = {k: z[k] for k in z.files}
    meta = json.loads(str(members["metadata"]))
    meta.update(changes)
    meta["checksum"] = sealed_checksum({k: members[k] for k in ARRAYS}, meta)
    members["metadata"] = np.asarray(json.dumps(meta))
    np.savez(path, **members)


def test_an_unknown_method_is_refused_before_the_matrix_is_judged(linear_saved):
    path, *_ = linear_saved
    _reseal(path, method="cca")
    with pytest.raises(TransformFileError, match="method 'cca' is not one this procalign knows.*upgrade procalign"):
        load_transform(path)


def test_a_linear_method_claiming_the_scale_option_is_refused(linear_saved):
    path, *_ = linear_saved
    _reseal(path, options={"centre": True, "normalize": False, "scale": True, "rotation_only": False})
    with pytest.raises(TransformFileError, match="apply to orthogonal transforms"):
        load_transform(path)
