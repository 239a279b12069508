"""Every reader and writer on real files: the committed fixtures and files written here."""
import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from procalign import ProcrustesAligner, load_transform
from procalign.formats import open_reader, parse_location
from procalign.pipeline import ApplyJob, FitJob, apply_file, fit_files
from procalign.pipeline.anchors import pair_anchors
from procalign.errors import UsageError


def read_all(path, **kw):
    with open_reader(parse_location(str(path)), **kw) as r:
        return np.concatenate([b.embeddings.copy() for b in r.batches(333)])


def test_fixture_readers_agree(fixtures):
    ref = np.load(fixtures / "e5.npy")
    assert ref.shape == (2600, 384) and ref.dtype == np.float32
    np.testing.assert_array_equal(read_all(fixtures / "e5.parquet"), ref)
    np.testing.assert_array_equal(read_all(fixtures / "e5.h5"), ref)
    np.testing.assert_array_equal(read_all(f"{fixtures / 'e5.h5'}:/emb"), ref)


def test_ids_are_read_from_parquet_and_h5(fixtures):
    with open_reader(parse_location(str(fixtures / "e5.parquet"))) as p, \
            open_reader(parse_location(str(fixtures / "e5.h5"))) as h:
        np.testing.assert_array_equal(p.ids(), h.ids())


def test_anchors_join_by_id_not_by_row_order(fixtures):
    # minilm.parquet is shuffled, lacks 20 ids and has 12 of its own
    with open_reader(parse_location(str(fixtures / "e5.parquet"))) as s, \
            open_reader(parse_location(str(fixtures / "minilm.parquet"))) as t:
        pairing = pair_anchors(s, t)
        assert (pairing.mode, pairing.pairs, pairing.only_source, pairing.only_target) == ("id", 2580, 20, 12)
        tid = t.ids()
        assert (s.ids()[pairing.source_index] == tid[pairing.target_index]).all()
    ref = np.load(fixtures / "minilm.npy")
    e5_ids = list(open_reader(parse_location(str(fixtures / "e5.h5"))).ids())
    with open_reader(parse_location(str(fixtures / "minilm.parquet"))) as t:
        rows = t.take(np.sort(pairing.target_index[:50]))
        order = np.argsort(pairing.target_index[:50])
        expect = ref[[e5_ids.index(i) for i in tid[np.sort(pairing.target_index[:50])]]]
        np.testing.assert_array_equal(rows, expect)
        assert len(order) == 50


def test_id_join_gives_same_map_as_aligned_rows(fixtures, tmp_path):
    by_id = fit_files(FitJob(parse_location(str(fixtures / "e5.parquet")),
                             parse_location(str(fixtures / "minilm.parquet")), report=False)).transform
    # the same pairs, as aligned .npy rows
    with open_reader(parse_location(str(fixtures / "e5.parquet"))) as s, \
            open_reader(parse_location(str(fixtures / "minilm.parquet"))) as t:
        p = pair_anchors(s, t)
    x = np.load(fixtures / "e5.npy")[p.source_index]
    y = read_all(fixtures / "minilm.parquet")[p.target_index]
    ref = ProcrustesAligner().fit(x.astype(np.float64), y.astype(np.float64))
    # The real cross-covariance is rank-deficient (a few singular values ~1e-10), so Q is free
    # on those directions: compare what the fit determines, the mapped anchors.
    residual = np.linalg.norm(by_id(x) - y) / np.linalg.norm(y)
    assert residual == pytest.approx(ref.fit_summary_["relative_residual"], rel=1e-5)
    assert np.abs(by_id(x) - ref.transform(x)).mean() < 1e-4


@pytest.fixture
def transform_path(fixtures, tmp_path):
    job = FitJob(parse_location(str(fixtures / "e5.npy")), parse_location(str(fixtures / "minilm.npy")), report=False)
    from procalign.pipeline.fit_and_save import fit_and_save
    fit_and_save(job, tmp_path / "t.npz")
    return tmp_path / "t.npz"


def run_apply(t_path, src, dst, **kw):
    job = ApplyJob(load_transform(t_path), str(t_path), parse_location(str(src)), parse_location(str(dst)), **kw)
    return apply_file(job)


def test_parquet_apply_passes_other_columns_and_metadata(fixtures, transform_path, tmp_path):
    out = tmp_path / "out.parquet"
    run_apply(transform_path, fixtures / "e5.parquet", out, batch_rows=700)
    src, got = pq.read_table(fixtures / "e5.parquet"), pq.read_table(out)
    assert got.column_names == src.column_names
    assert got.column("id").equals(src.column("id")) and got.column("text").equals(src.column("text"))
    assert got.schema.metadata[b"source"] == b"python stdlib docstrings"
    assert got.schema.field("embedding").type == src.schema.field("embedding").type
    t = load_transform(transform_path)
    mapped = np.vstack(got.column("embedding").to_pylist())
    np.testing.assert_allclose(mapped, t(np.load(fixtures / "e5.npy")), atol=2e-5)


@pytest.mark.parametrize("kind", ["list", "large_list", "fixed_size_list"])
def test_parquet_list_kinds_round_trip(tmp_path, rng, kind):
    from procalign.formats.parquet import list_array
    m = rng.normal(size=(37, 5)).astype(np.float32)
    like = {"list": pa.list_(pa.float32()), "large_list": pa.large_list(pa.float32()),
            "fixed_size_list": pa.list_(pa.float32(), 5)}[kind]
    arr = list_array(m, like)
    assert arr.type == like
    pq.write_table(pa.table({"k": np.arange(37), "v": arr}), tmp_path / "a.parquet", row_group_size=10)
    np.testing.assert_array_equal(read_all(tmp_path / "a.parquet"), m)
    with open_reader(parse_location(str(tmp_path / "a.parquet"))) as r:
        np.testing.assert_array_equal(r.take(np.array([0, 9, 10, 36])), m[[0, 9, 10, 36]])
        starts = [b.start for b in r.batches(4, start=13)]
        assert starts[0] == 13


def test_h5_apply_copies_ids_and_writes_a_contiguous_dataset(fixtures, transform_path, tmp_path):
    out = tmp_path / "out.h5"
    run_apply(transform_path, fixtures / "e5.h5", out, batch_rows=1000)
    t = load_transform(transform_path)
    with h5py.File(out) as f, h5py.File(fixtures / "e5.h5") as src:
        assert set(f) == {"emb", "ids"}
        # contiguous: the rows were written straight into the file, past HDF5
        assert f["emb"].chunks is None and f["emb"].shape == (2600, 384)
        np.testing.assert_array_equal(f["ids"][()], src["ids"][()])
        want = t.scale * (src["emb"][()].astype(np.float64) - t.source_mean) @ t.matrix + t.target_mean
        np.testing.assert_allclose(f["emb"][()], want, atol=2e-6)


def test_npy_float16_in_and_dtype_out(fixtures, transform_path, tmp_path):
    x16 = np.load(fixtures / "e5.npy").astype(np.float16)
    np.save(tmp_path / "x16.npy", x16)
    run_apply(transform_path, tmp_path / "x16.npy", tmp_path / "y16.npy", batch_rows=999)
    y16 = np.load(tmp_path / "y16.npy")
    assert y16.dtype == np.float16
    ref = load_transform(transform_path)(x16.astype(np.float64))
    np.testing.assert_allclose(y16.astype(np.float64), ref, atol=3e-3)
    run_apply(transform_path, tmp_path / "x16.npy", tmp_path / "y64.npy", dtype="float64")
    assert np.load(tmp_path / "y64.npy").dtype == np.float64


def test_cross_format_and_inverse_round_trip(fixtures, transform_path, tmp_path):
    run_apply(transform_path, fixtures / "e5.parquet", tmp_path / "fwd.h5")
    run_apply(transform_path, f"{tmp_path / 'fwd.h5'}:/embeddings", tmp_path / "back.npy", inverse=True)
    np.testing.assert_allclose(np.load(tmp_path / "back.npy"), np.load(fixtures / "e5.npy"), atol=2e-5)


def test_zero_row_input_is_refused_and_nothing_is_written(tmp_path, transform_path):
    from procalign.errors import InputError
    np.save(tmp_path / "empty.npy", np.zeros((0, 384), np.float32))
    with pytest.raises(InputError, match="zero rows"):
        run_apply(transform_path, tmp_path / "empty.npy", tmp_path / "out.npy")
    assert not any(p.name.startswith(("out.npy", ".out.npy")) for p in tmp_path.iterdir())


def test_h5_ambiguous_dataset_needs_a_name(tmp_path):
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["a"] = np.zeros((3, 2), np.float32)
        f["b"] = np.zeros((3, 2), np.float32)
    with pytest.raises(UsageError, match="several 2-D float datasets"):
        open_reader(parse_location(str(tmp_path / "two.h5")))
    assert open_reader(parse_location(f"{tmp_path / 'two.h5'}:/b")).rows == 3
