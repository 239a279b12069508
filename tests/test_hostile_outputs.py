"""What used to be silently wrong now does what the README says: names, links, layouts, ids and
codecs. Each is checked by reading the result back with the format's own library."""
import json
import os

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from procalign import load_transform
from procalign.cli import app
from procalign.formats import parse_location
from test_bad_inputs import D, emb_list, good, npy, transform

runner = CliRunner(env={"COLUMNS": "200"})


def ok(*argv):
    r = runner.invoke(app, [str(a) for a in argv])
    assert r.exit_code == 0, r.output
    return r


def mapped(t_path, x):
    t = load_transform(t_path)
    return t.scale * (np.asarray(x, np.float64) - t.source_mean) @ t.matrix + t.target_mean


def test_the_named_output_dataset_is_the_one_written(tmp_path):
    t = transform(D, tmp_path)
    src = tmp_path / "in.h5"
    with h5py.File(src, "w") as f:
        f["emb"] = good()
    ok("apply", t, f"{src}:/emb", "-o", f"{tmp_path / 'out.h5'}:/a/b/c")
    with h5py.File(tmp_path / "out.h5") as f:
        assert "/a/b/c" in f and "emb" not in f
        np.testing.assert_allclose(f["/a/b/c"][()], mapped(t, good()), atol=2e-6)


def test_files_that_share_a_stem_get_distinct_space_names_so_stamps_work(tmp_path):
    (tmp_path / "old").mkdir(), (tmp_path / "new").mkdir()
    a, b = npy(tmp_path / "old" / "emb.npy", good(200, seed=1)), npy(tmp_path / "new" / "emb.npy", good(200, seed=2))
    ok("fit", a, b, "-o", tmp_path / "t.npz", "--no-report")
    t = load_transform(tmp_path / "t.npz")
    assert (t.source.name, t.target.name) == ("old/emb", "new/emb")
    ok("apply", tmp_path / "t.npz", a, "-o", tmp_path / "once.npy")
    r = runner.invoke(app, ["apply", str(tmp_path / "t.npz"), str(tmp_path / "once.npy"), "-o", str(tmp_path / "twice.npy")])
    assert r.exit_code == 8 and "already in space 'new/emb'" in r.stderr


def test_a_stamp_is_found_through_a_symlink_and_a_symlinked_output_keeps_its_link(tmp_path):
    t = transform(D, tmp_path)
    real = tmp_path / "real.npy"
    real.write_bytes(b"old content")
    link = tmp_path / "link.npy"
    link.symlink_to(real)
    ok("apply", t, npy(tmp_path / "a.npy", good()), "-o", link, "--overwrite")
    assert link.is_symlink() and os.readlink(link) == str(real)
    np.testing.assert_allclose(np.load(real), mapped(t, good()), atol=2e-6)
    r = runner.invoke(app, ["apply", str(t), str(link), "-o", str(tmp_path / "again.npy")])
    assert r.exit_code == 8, r.output  # the stamp beside the real file is found through the link


def test_a_colon_slash_inside_a_directory_name_is_part_of_the_path(tmp_path):
    odd = tmp_path / "run:" / "x"
    odd.mkdir(parents=True)
    loc = parse_location(f"{odd}/emb.npy")
    assert loc.path == odd / "emb.npy" and loc.inner is None
    h5 = parse_location(f"{odd}/emb.h5:/grp/ds")
    assert h5.path == odd / "emb.h5" and h5.inner == "/grp/ds"


def test_ids_travel_between_formats(tmp_path):
    t = transform(D, tmp_path)
    src = tmp_path / "in.h5"
    with h5py.File(src, "w") as f:
        f["emb"] = good()
        f["ids"] = np.arange(1000, 1050)
    ok("apply", t, src, "-o", tmp_path / "out.parquet")
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.column("id").to_pylist() == list(range(1000, 1050))
    ok("apply", t, tmp_path / "out.parquet", "-o", tmp_path / "back.h5", "--inverse")
    with h5py.File(tmp_path / "back.h5") as f:
        assert f["ids"][()].tolist() == list(range(1000, 1050))
        np.testing.assert_allclose(f["embeddings"][()], good(), atol=2e-5)


def test_parquet_to_parquet_keeps_the_codec_of_the_other_columns(tmp_path):
    t = transform(D, tmp_path)
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": [f"k{i}" for i in range(50)], "emb": emb_list(good()),
                             "text": ["x" * 40] * 50}), src, compression="zstd")
    ok("apply", t, src, "-o", tmp_path / "out.parquet")
    meta = pq.ParquetFile(tmp_path / "out.parquet").metadata.row_group(0)
    codecs = {meta.column(i).path_in_schema.split(".")[0]: meta.column(i).compression for i in range(meta.num_columns)}
    assert codecs["id"] == "ZSTD" and codecs["text"] == "ZSTD"
    assert codecs["emb"] == "UNCOMPRESSED"  # embeddings are written plain by design (README, Formats)


def test_fit_without_output_writes_nothing_and_warns_on_few_anchors(tmp_path):
    a, b = npy(tmp_path / "a.npy", good(6)), npy(tmp_path / "b.npy", good(6, seed=2))
    before = set(tmp_path.iterdir())
    r = runner.invoke(app, ["fit", str(a), str(b), "--json"])
    assert r.exit_code == 0, r.output
    assert set(tmp_path.iterdir()) == before
    doc = json.loads(r.stdout)
    assert doc["output"] is None and any("only 6 anchor pairs for 8 dimensions" in w for w in doc["warnings"])
