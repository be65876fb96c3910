"""Batch ids depend only on coordinates, so re-runs rewrite the same files."""

from __future__ import annotations

from alert_broker.pipeline.driver import _chunks, batch_ranges, make_batch_id
from alert_broker.surveys.messages import RawMessage


def _msgs(source, partition, offsets):
    return [RawMessage(source, partition, o, b"") for o in offsets]


def test_ranges_and_ids_are_deterministic():
    a = _msgs("ztf", 0, [5, 3, 4]) + _msgs("ztf", 1, [10, 11])
    assert batch_ranges(a) == {"ztf": {0: (3, 5), 1: (10, 11)}}
    assert make_batch_id(a) == make_batch_id(list(reversed(a))) == "ztf-p0o3-5_p1o10-11"
    assert make_batch_id(_msgs("ztf", 0, [3, 4, 6])) != make_batch_id(a)


def test_archive_names_are_slugged_and_long_ids_hashed():
    bid = make_batch_id(_msgs("archive:ztf night/2020", 0, [0, 9]))
    assert bid == "ztf_night_2020-p0o0-9"
    many = [m for p in range(40) for m in _msgs("topic", p, [p * 100, p * 100 + 99])]
    long_id = make_batch_id(many)
    assert len(long_id) <= 120 and long_id == make_batch_id(many[::-1])


def test_chunks_cover_everything_once():
    items = list(range(103))
    chunks = _chunks(items, 8)
    assert sum(chunks, []) == items and len(chunks) <= 8
    assert _chunks([1], 8) == [[1]]
