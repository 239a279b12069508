"""The Parquet footer codec and merge that make parquet output resumable."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from procalign.formats import parquet_footer as pf
from procalign.formats.parquet import list_array, writer_options


def encoded(table, **options):
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, table.schema, **options) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def tables(rng):
    out = []
    for a, n in ((0, 3), (3, 40), (43, 1)):
        m = rng.normal(size=(n, 5)).astype(np.float32)
        out.append(pa.table({"id": [f"r{i}" for i in range(a, a + n)], "k": np.arange(a, a + n),
                             "embedding": list_array(m, pa.list_(pa.float32()))}))
    return out


@pytest.mark.parametrize("name", ["e5.parquet", "minilm.parquet"])
def test_codec_reencodes_real_footers_byte_for_byte(fixtures, name):
    _, foot = pf.split_file((fixtures / name).read_bytes())
    assert pf.encode(pf.decode(foot)) == foot
    assert pf.footer_rows(foot) == pq.ParquetFile(fixtures / name).metadata.num_rows


def test_merged_bodies_read_as_the_concatenation(rng, tmp_path):
    parts = tables(rng)
    out, footers = bytearray(pf.MAGIC), []
    for t in parts:
        body, foot = pf.split_file(encoded(t, **writer_options(t.schema, "embedding")))
        footers.append((foot, len(out) - 4))
        out += body
    out += pf.tail(pf.merge(footers))
    (tmp_path / "m.parquet").write_bytes(bytes(out))
    f = pq.ParquetFile(tmp_path / "m.parquet")
    assert f.metadata.num_row_groups == 3 and f.metadata.num_rows == 44
    assert f.read().equals(pa.concat_tables(parts))
    assert f.read_row_group(1).equals(parts[1])  # offsets of a middle group moved correctly
    assert f.schema_arrow.equals(parts[0].schema)


def test_dictionary_pages_move_too(rng, tmp_path):
    parts = tables(rng)
    out, footers = bytearray(pf.MAGIC), []
    for t in parts:  # defaults: dictionary encoding and snappy on every column
        body, foot = pf.split_file(encoded(t))
        footers.append((foot, len(out) - 4))
        out += body
    out += pf.tail(pf.merge(footers))
    (tmp_path / "d.parquet").write_bytes(bytes(out))
    assert pq.read_table(tmp_path / "d.parquet").equals(pa.concat_tables(parts))


def test_page_index_is_refused(rng):
    t = tables(rng)[1]
    _, foot = pf.split_file(encoded(t, write_page_index=True))
    with pytest.raises(pf.FooterError, match="page index"):
        pf.merge([(foot, 10)])


def test_garbage_is_refused():
    with pytest.raises(pf.FooterError, match="magic"):
        pf.split_file(b"not parquet at all")
    with pytest.raises(pf.FooterError):
        pf.decode(b"\x15")
