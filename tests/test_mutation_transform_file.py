"""The transform file against its written spec: files built here with plain numpy and a checksum
computed here from the spec's words (hashlib), every refusal with its exact message."""
import hashlib
import json
import zipfile

import numpy as np
import pytest

from procalign import transform_file as tf
from procalign.errors import TransformFileError
from procalign.math.affine import AffineMap
from procalign.math.procrustes import FitOptions
from procalign.transform import Space, Transform
from conftest import random_orthogonal

NAMES = ("matrix", "source_mean", "target_mean", "scale")


def spec_checksum(arrays, meta=None):
    """The spec: sha256 over name|dtype|shape| and the bytes of each array, then (version 2)
    ``metadata|`` and the metadata without its checksum as canonical JSON."""
    h = hashlib.sha256()
    for name in NAMES:
        a = np.ascontiguousarray(arrays[name], dtype="<f8")
        h.update(f"{name}|<f8|{a.shape}|".encode() + a.tobytes())
    if meta is not None:
        body = {k: v for k, v in meta.items() if k != "checksum"}
        h.update(b"metadata|" + json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode())
    return "sha256:" + h.hexdigest()


def arrays_of(rng, ds=3, dt=3, scale=1.5):
    q = random_orthogonal(rng, max(ds, dt))[:ds, :dt]
    return {"matrix": q, "source_mean": rng.normal(size=ds), "target_mean": rng.normal(size=dt),
            "scale": np.asarray(scale)}


def meta_of(arrays, **changes):
    ds, dt = arrays["matrix"].shape
    meta = {"format": "procalign-transform", "format_version": 2, "source": {"name": "old", "dim": ds},
            "target": {"name": "new", "dim": dt}, "method": "orthogonal",
            "options": {"centre": True, "normalize": False, "scale": True, "rotation_only": False},
            "inverse_of": None, "procalign_version": "9.9", "created": "2030-01-01T00:00:00+00:00",
            "anchors": 12}
    meta.update(changes)
    return meta


def write(path, arrays, meta, seal=True, version=2):
    meta = dict(meta)
    if seal:
        meta["checksum"] = spec_checksum(arrays, meta if version == 2 else None)
    np.savez(path, metadata=np.asarray(json.dumps(meta)), **arrays)
    return meta


def refused(path, message):
    """The error names the file first, then says what is wrong (a lower-case sentence)."""
    with pytest.raises(TransformFileError) as e:
        tf.load(path)
    text = str(e.value)
    assert text.startswith(f"{path}: ") and message in text, text
    assert text[len(f"{path}: ")].islower(), text
    return text


@pytest.fixture
def good(tmp_path, rng):
    arrays = arrays_of(rng)
    return tmp_path / "t.npz", arrays, meta_of(arrays)


def test_a_file_written_by_hand_loads_with_every_field(good):
    path, arrays, meta = good
    meta = write(path, arrays, meta)
    t = tf.load(path)
    np.testing.assert_array_equal(t.matrix, arrays["matrix"])
    np.testing.assert_array_equal(t.source_mean, arrays["source_mean"])
    np.testing.assert_array_equal(t.target_mean, arrays["target_mean"])
    assert t.scale == 1.5 and isinstance(t.scale, float) and t.map.normalize is False
    assert (t.source, t.target) == (Space("old", 3), Space("new", 3))
    assert t.options == FitOptions(centre=True, normalize=False, scale=True, rotation_only=False)
    assert (t.method, t.inverse_of, t.format_version) == ("orthogonal", None, 2)
    assert (t.created, t.procalign_version, t.checksum) == ("2030-01-01T00:00:00+00:00", "9.9", meta["checksum"])
    assert t.provenance == {"anchors": 12}


def test_save_writes_what_the_spec_says(tmp_path, rng):
    arrays = arrays_of(rng, 2, 4, 0.8)
    affine = AffineMap(arrays["matrix"], arrays["source_mean"], arrays["target_mean"], 0.8, True)
    t = Transform.fitted(affine, Space("modèle", 2), Space("nouveau", 4), FitOptions(normalize=True), anchors=7)
    path = tmp_path / "out.npz"
    sealed = tf.save(t, path)
    assert [p.name for p in tmp_path.iterdir()] == ["out.npz"]  # no temporary file left
    with zipfile.ZipFile(path) as z:
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
    with np.load(path, allow_pickle=False) as z:
        text = str(z["metadata"])
        stored = {k: z[k] for k in NAMES}
        assert all(z[k].dtype == np.dtype("<f8") for k in NAMES)
    meta = json.loads(text)
    assert text == json.dumps(meta, sort_keys=True)  # written with sorted keys
    assert meta["checksum"] == spec_checksum(stored, meta)  # non-ASCII names hashed as ASCII escapes
    assert meta["format"] == "procalign-transform" and meta["format_version"] == 2
    assert meta["source"] == {"name": "modèle", "dim": 2} and meta["target"] == {"name": "nouveau", "dim": 4}
    assert meta["options"] == {"centre": True, "normalize": True, "scale": False, "rotation_only": False}
    assert meta["method"] == "orthogonal" and meta["inverse_of"] is None and meta["anchors"] == 7
    assert meta["procalign_version"] == t.procalign_version and meta["created"] == t.created
    assert sealed.checksum == meta["checksum"] == tf.checksum(t) and sealed.format_version == 2
    back = tf.load(path)
    assert back.map.normalize is True and back.scale == 0.8 and back.checksum == sealed.checksum


def test_save_writes_float64_members_and_names_the_file_it_refuses(tmp_path, rng):
    arrays = arrays_of(rng)
    f32 = AffineMap(arrays["matrix"].astype(np.float32), arrays["source_mean"].astype(np.float32),
                    arrays["target_mean"].astype(np.float32))
    tf.save(Transform.fitted(f32, Space("a", 3), Space("b", 3), FitOptions()), tmp_path / "f.npz")
    with np.load(tmp_path / "f.npz") as z:
        assert {k: z[k].dtype.str for k in NAMES} == {k: "<f8" for k in NAMES}
    skew = AffineMap(arrays["matrix"] * 2, arrays["source_mean"], arrays["target_mean"])
    with pytest.raises(TransformFileError) as e:
        tf.save(Transform.fitted(skew, Space("a", 3), Space("b", 3), FitOptions()), tmp_path / "s.npz")
    assert str(e.value).startswith(f"{tmp_path / 's.npz'}: matrix is not orthonormal")


def test_save_leaves_nothing_when_it_fails(tmp_path, rng):
    arrays = arrays_of(rng)
    t = Transform.fitted(AffineMap(arrays["matrix"], arrays["source_mean"], arrays["target_mean"]),
                         Space("a", 3), Space("b", 3), FitOptions())
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(OSError):
        tf.save(t, tmp_path / "dir.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.npz"]


def test_provenance_may_not_set_identity_keys(rng):
    arrays = arrays_of(rng)
    t = Transform.fitted(AffineMap(arrays["matrix"], arrays["source_mean"], arrays["target_mean"]),
                         Space("a", 3), Space("b", 3), FitOptions(), format="x", checksum="y")
    with pytest.raises(ValueError, match=r"^provenance may not set identity keys \['checksum', 'format'\]$"):
        tf.to_metadata(t)


def test_version_1_checksum_is_the_arrays_only(good):
    path, arrays, meta = good
    v1 = {"format": "procalign-transform", "format_version": 1, "source": {"dim": 3}, "target": {"dim": 3},
          "options": {"centre": True}, "anchors": 3}
    write(path, arrays, v1, version=1)
    assert tf.array_checksum(arrays) == spec_checksum(arrays)
    t = tf.load(path)
    assert (t.source.name, t.target.name, t.format_version, t.method) == ("source", "target", 1, "orthogonal")
    assert t.options == FitOptions(centre=True)  # missing options take their defaults
    assert t.provenance == {"anchors": 3} and (t.created, t.procalign_version) == ("", "")
    bad = dict(arrays, scale=np.asarray(1.25))
    np.savez(path, metadata=np.asarray(json.dumps({**v1, "checksum": spec_checksum(arrays)})), **bad)
    assert "checksum mismatch: the arrays were modified or damaged" in refused(path, "checksum mismatch")


def test_version_1_without_options_and_names_given(good):
    path, arrays, _ = good
    v1 = {"format": "procalign-transform", "format_version": 1, "source": {"dim": 3, "name": "e5"},
          "target": {"dim": 3}}
    write(path, arrays, v1, version=1)
    t = tf.load(path)
    assert (t.source.name, t.target.name) == ("e5", "target") and t.options == FitOptions()


def test_not_a_file(tmp_path):
    refused(tmp_path / "missing.npz", "transform file not found; pass the .npz written by `procalign fit`")
    (tmp_path / "d.npz").mkdir()
    refused(tmp_path / "d.npz", "transform file not found")


def test_unreadable_and_incomplete_archives(tmp_path, good):
    path, arrays, meta = good
    path.write_bytes(b"PK\x03\x04 not really a zip")
    msg = refused(path, "not a readable transform file (BadZipFile: ")
    assert msg.endswith("re-create it with `procalign fit`")
    np.savez(path, matrix=arrays["matrix"], source_mean=arrays["source_mean"])
    refused(path, "missing member(s) target_mean, scale, metadata; not a procalign transform")


def test_members_that_expand_beyond_the_cap_are_refused(good, monkeypatch):
    path, arrays, meta = good
    write(path, arrays, meta)
    with zipfile.ZipFile(path) as z:
        sizes = {i.filename: i.file_size for i in z.infolist()}
    biggest = max(sizes, key=sizes.get)
    monkeypatch.setattr(tf, "MAX_MEMBER_BYTES", sizes[biggest])
    assert tf.load(path).checksum  # exactly at the cap is fine
    monkeypatch.setattr(tf, "MAX_MEMBER_BYTES", sizes[biggest] - 1)
    refused(path, f"member {biggest} expands to {sizes[biggest]} bytes; not a procalign transform")


@pytest.mark.parametrize("text,message", [
    ("not json", "metadata is not a JSON object; re-create the file with `procalign fit`"),
    ("[1, 2]", "metadata is not a JSON object"),
    ('{"format": "other"}', "format is 'other', expected 'procalign-transform'"),
    ('{"format": "procalign-transform"}', "format_version None is not a positive integer; re-create the file"),
    ('{"format": "procalign-transform", "format_version": true}', "format_version True is not a positive integer"),
    ('{"format": "procalign-transform", "format_version": 0}', "format_version 0 is not a positive integer"),
    ('{"format": "procalign-transform", "format_version": 1.0}', "format_version 1.0 is not a positive integer"),
    ('{"format": "procalign-transform", "format_version": 3}',
     "format version 3 is newer than this procalign reads (2); upgrade procalign"),
])
def test_metadata_refusals(good, text, message):
    path, arrays, _ = good
    np.savez(path, metadata=np.asarray(text), **arrays)
    refused(path, message)


def test_integer_members_are_refused(good):
    path, arrays, meta = good
    arrays = dict(arrays, scale=np.asarray(2))
    write(path, arrays, meta)
    refused(path, "member 'scale' has dtype int64, expected float64; re-create the file")


def test_every_metadata_field_is_sealed(good):
    path, arrays, meta = good
    sealed = write(path, arrays, meta)
    for key, value in (("anchors", 13), ("created", "2031"), ("inverse_of", "sha256:x")):
        np.savez(path, metadata=np.asarray(json.dumps({**sealed, key: value})), **arrays)
        msg = refused(path, "checksum mismatch: the arrays or metadata were modified or damaged; ")
        assert msg.endswith("re-create the file with `procalign fit`")


@pytest.mark.parametrize("change,message", [
    (dict(matrix=np.zeros((0, 3))), "inconsistent shapes: matrix (0, 3), means (3,) and (3,), scale (); re-create the file"),
    (dict(matrix=np.eye(3)[0]), "inconsistent shapes: matrix (3,)"),
    (dict(source_mean=np.zeros(2)), "inconsistent shapes: matrix (3, 3), means (2,) and (3,)"),
    (dict(target_mean=np.zeros(4)), "means (3,) and (4,)"),
    (dict(scale=np.ones(1)), "scale (1,); re-create the file"),
    (dict(source_mean=np.array([0, np.nan, 0])), "the arrays hold NaN or Inf; re-create the file"),
    (dict(target_mean=np.array([0, 0, np.inf])), "the arrays hold NaN or Inf"),
    (dict(scale=np.asarray(np.inf)), "the arrays hold NaN or Inf"),
    (dict(matrix=np.diag([1.0, 1.0, np.nan])), "the arrays hold NaN or Inf"),
    (dict(scale=np.asarray(0.0)), "scale is 0.0, must be > 0; re-create the file"),
    (dict(scale=np.asarray(-2.0)), "scale is -2.0, must be > 0"),
    (dict(matrix=np.diag([1.0, 1.0, 1.00001])), "matrix is not orthonormal (max |QQ^T - I| = 2.00e-05); "
                                                "re-create the file with `procalign fit`"),
])
def test_array_refusals(good, change, message):
    path, arrays, meta = good
    arrays = {**arrays, **change}
    write(path, arrays, meta)
    refused(path, message)


@pytest.mark.parametrize("shape", [(2, 4), (4, 2)])
def test_orthonormal_rows_or_columns_within_the_tolerance(tmp_path, rng, shape):
    arrays = arrays_of(rng, *shape)
    path = tmp_path / "t.npz"
    write(path, arrays, meta_of(arrays))
    assert tf.load(path).matrix.shape == shape
    wobble = arrays["matrix"] * (1 + 4e-7)  # |QQ^T - I| ~ 8e-7 < 1e-6
    write(path, dict(arrays, matrix=wobble), meta_of(arrays))
    assert tf.load(path).matrix.shape == shape
    off = arrays["matrix"] * (1 + 1e-6)  # ~2e-6 > 1e-6
    write(path, dict(arrays, matrix=off), meta_of(arrays))
    refused(path, "matrix is not orthonormal")


@pytest.mark.parametrize("changes,message", [
    (dict(method="ridge"), "method 'ridge' is not one this procalign knows (orthogonal, whitened, affine, linear); "
                           "upgrade procalign"),
    (dict(inverse_of=5), "metadata 'inverse_of' must be a checksum string or null, got 5"),
    (dict(source={"name": "old"}), "metadata 'source' must be {\"name\": str, \"dim\": int}, got {'name': 'old'}"),
    (dict(target={"name": 3, "dim": 3}), "metadata 'target' must be"),
    (dict(target={"name": "x", "dim": True}), "metadata 'target' must be"),
    (dict(source="old"), "metadata 'source' must be"),
    (dict(source={"name": "old", "dim": 4}), "metadata says the source space is 4-d but the matrix has 3"),
    (dict(target={"name": "new", "dim": 2}), "metadata says the target space is 2-d but the matrix has 3"),
    (dict(options={"centre": 1}), "metadata 'options' must map centre, normalize, scale, rotation_only to "
                                  "true/false, got {'centre': 1}"),
    (dict(options={"shear": True}), "metadata 'options' must map"),
    (dict(options=[True]), "metadata 'options' must map"),
])
def test_identity_refusals(good, changes, message):
    path, arrays, meta = good
    write(path, arrays, {**meta, **changes})
    refused(path, message)


def test_identity_defaults_and_inverse_of(good):
    path, arrays, meta = good
    del meta["method"]
    meta["options"] = {"rotation_only": True}
    meta["inverse_of"] = "sha256:abc"
    write(path, arrays, meta)
    t = tf.load(path)
    assert t.method == "orthogonal" and t.inverse_of == "sha256:abc"
    assert t.options == FitOptions(rotation_only=True)
    assert t.provenance == {"anchors": 12}


def test_loaded_arrays_are_float64_copies(good):
    path, arrays, meta = good
    arrays = {k: np.asarray(v, "<f4") if k != "scale" else v for k, v in arrays.items()}
    arrays["matrix"] = np.eye(3, dtype="<f4")
    write(path, arrays, meta)
    t = tf.load(path)
    assert t.matrix.dtype == t.source_mean.dtype == t.target_mean.dtype == np.float64
    # the checksum of a float32 member is taken over its float64 value, as the spec says
    assert t.checksum == spec_checksum(arrays, {**meta})


def test_one_dimensional_maps_load(tmp_path):
    arrays = {"matrix": np.array([[1.0]]), "source_mean": np.zeros(1), "target_mean": np.zeros(1),
              "scale": np.asarray(1.0)}
    write(tmp_path / "one.npz", arrays, meta_of(arrays))
    assert tf.load(tmp_path / "one.npz").matrix.shape == (1, 1)


def test_pickled_members_are_never_loaded(tmp_path, good):
    path, arrays, meta = good
    np.savez(path, metadata=np.asarray([{"format": "procalign-transform"}], dtype=object), **arrays)
    refused(path, "not a readable transform file (ValueError: ")
