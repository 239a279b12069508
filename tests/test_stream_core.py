"""The stream core on its own: any batches in, any writer out, no files needed; sources whose
length is unknown until the end; errors from any stage surface."""
import numpy as np
import pytest

from procalign.formats import SinkSpec, Source, open_reader, parse_location, sink_class
from procalign.formats.base import Batch
from procalign.math.affine import AffineMap
from procalign.pipeline.stream import BatchMapper, map_arrays, map_stream, run_stages
from conftest import random_orthogonal


class UnknownLengthSource(Source):
    """Rows produced lazily, the count known only once the generator ends (like stdin)."""

    def __init__(self, data: np.ndarray, piece: int):
        self.data, self.piece = data, piece
        self.rows, self.dim, self.dtype, self.path = None, data.shape[1], data.dtype, "<generator>"
        self.produced = 0

    def batches(self, rows, start=0):
        for a in range(start, len(self.data), min(rows, self.piece)):
            chunk = self.data[a:a + min(rows, self.piece)]
            self.produced += len(chunk)
            yield Batch(a, chunk.copy())


@pytest.fixture
def affine(rng):
    d = 12
    return AffineMap(random_orthogonal(rng, d), rng.normal(size=d), rng.normal(size=d), 1.7)


def reference(affine, x):
    # written out here, not through the kernel under test
    return affine.scale * (x.astype(np.float64) - affine.source_mean) @ affine.matrix + affine.target_mean


@pytest.mark.parametrize("ext", ["npy", "parquet", "h5"])
def test_a_source_of_unknown_length_streams_into_every_sink(tmp_path, rng, affine, ext):
    x = rng.normal(size=(1003, 12)).astype(np.float32)
    source = UnknownLengthSource(x, piece=97)
    loc = parse_location(str(tmp_path / f"out.{ext}"))
    sink = sink_class(loc)(loc.path, SinkSpec(12, np.dtype(np.float32), rows=None))
    done = map_stream(source.batches(64), BatchMapper(affine, np.float32, np.float32, 64),
                      lambda out, batch: sink.write(out, batch.extra))
    sink.finish()
    assert done == source.produced == 1003
    with open_reader(loc) as r:
        assert (r.rows, r.dim) == (1003, 12)
        got = np.concatenate([b.embeddings.copy() for b in r.batches(500)])
    np.testing.assert_allclose(got, reference(affine, x), rtol=1e-5, atol=1e-5)


def test_the_core_runs_on_arrays_in_memory(rng, affine):
    pieces = [rng.normal(size=(n, 12)) for n in (5, 0, 17, 1)]
    mapped = map_arrays(affine, pieces, np.float64)
    assert [len(m) for m in mapped] == [5, 0, 17, 1]
    for m, p in zip(mapped, pieces):
        np.testing.assert_allclose(m, reference(affine, p), atol=1e-12)


def test_rows_are_written_in_order_and_the_row_count_is_exact(rng, affine):
    x = rng.normal(size=(300, 12)).astype(np.float32)
    seen = []
    map_stream((Batch(a, x[a:a + 7]) for a in range(0, 300, 7)), BatchMapper(affine, np.float32, np.float32, 7),
               lambda out, batch: seen.append((batch.start, out.copy())))
    assert [s for s, _ in seen] == list(range(0, 300, 7))
    np.testing.assert_allclose(np.concatenate([o for _, o in seen]), reference(affine, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stage", ["produce", "compute", "consume"])
def test_the_first_error_of_any_stage_is_raised(stage):
    consumed = []

    def produce():
        for i in range(100):
            if stage == "produce" and i == 5:
                raise KeyError("read failed")
            yield i

    def compute(i):
        if stage == "compute" and i == 5:
            raise KeyError("map failed")
        return i

    def consume(i):
        if stage == "consume" and i == 5:
            raise KeyError("write failed")
        consumed.append(i)

    with pytest.raises(KeyError):
        run_stages(produce(), compute, consume)
    assert consumed == list(range(5))
