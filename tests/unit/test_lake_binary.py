"""Columns of bytes enter Arrow without a copy when their values are large (raw packets), and the lake's files
hold the same bytes either way."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from alert_broker.storage.lake import ZERO_COPY_MIN_BYTES, Lake, binary_column


def _objects(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def test_large_values_are_referenced_not_copied():
    rng = np.random.default_rng(3)
    values = [rng.bytes(ZERO_COPY_MIN_BYTES + k) for k in range(5)]
    col = binary_column(_objects(values))
    assert isinstance(col, pa.ChunkedArray) and col.num_chunks == 5
    for chunk, value in zip(col.chunks, values, strict=True):
        assert chunk.buffers()[2].address == pa.py_buffer(value).address  # the bytes object's own memory
    assert col.to_pylist() == values


def test_small_values_and_nulls_are_copied_into_one_array():
    small = [b"a", b"", b"xyz"]
    col = binary_column(_objects(small))
    assert isinstance(col, pa.Array) and col.to_pylist() == small
    big_with_null = [b"x" * (2 * ZERO_COPY_MIN_BYTES), None]
    col = binary_column(_objects(big_with_null))
    assert isinstance(col, pa.Array) and col.to_pylist() == big_with_null
    assert binary_column(_objects([])).to_pylist() == []


def test_lake_files_of_referenced_values_read_back_equal(tmp_path):
    """Two nights (the table is filtered per night), row groups smaller than the chunk count, mixed sizes."""
    rng = np.random.default_rng(5)
    payloads = [rng.bytes(int(n)) for n in rng.integers(ZERO_COPY_MIN_BYTES, 4 * ZERO_COPY_MIN_BYTES, 11)]
    frame = pd.DataFrame(
        {
            "candid": np.arange(11, dtype=np.int64),
            "night": np.where(np.arange(11) % 3 == 0, 20250101, 20250102).astype(np.int32),
            "payload": _objects(payloads),
        }
    )
    paths = Lake(str(tmp_path)).write_table("raw", frame, "b1", row_group_size=4, compression="zstd")
    assert len(paths) == 2
    back = pd.concat([pq.read_table(p).to_pandas() for p in paths])
    got = dict(zip(back["candid"], back["payload"], strict=True))
    assert got == dict(enumerate(payloads))
