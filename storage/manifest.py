"""The batch manifest: which lake files each batch wrote, for which source offsets, and whether it committed.

Why it exists. The broker commits a batch's source offsets only after every sink has written (at-least-once).
A crash between writing and committing means the same messages come again, but not necessarily in the same
batches: a Kafka consumer restarts at the committed offset and cuts batches by size and time, so the replay
may group offsets 0-149 where the lost run wrote 0-99. Lake file names derive from the batch (its source and
offsets), so the replayed batch writes *different* files, and without help the lake would hold the rows of
offsets 0-99 twice. PostgreSQL needs little help: its upserts are keyed and naturally idempotent, except for a
message that a batch dead-lettered and its replay decodes (a fixed decoder, a repaired packet): nothing would
overwrite its ``dead_letter`` row, so ``forget_batches`` deletes the retired batches' dead-letter rows, and the
replay writes those of the messages that still fail.

The protocol, per batch (see pipeline/driver.py):
1. ``superseded_files(store, source, ranges, batch_id)``: every recorded batch of the same source whose range
   on a shared partition overlaps the new batch's. Those offsets are being processed again (the old batch
   never committed, or this is a deliberate replay), so the old files must go; the old batch's offsets beyond
   the new range are redone by the replay's next batches (a replay reads on in offset order), which overlap it
   too. A batch that overlaps none is untouched, before or after the new range: a re-run of an archive that
   stops part-way (a SIGTERM, a crash) leaves the later batches of the earlier run in place, committed rows
   whose replay has not come yet. (Until 7 Dec every batch *ending* at or after the new first offset was
   retired at once, which left those rows out of the lake, though not out of PostgreSQL, until the re-run
   reached them.)
2. The driver deletes those files (``Lake.delete_files``) and then ``forget_batches``. Deleting first means a
   crash in between leaves a manifest row pointing at files that may be gone; deleting again is harmless.
3. ``begin_batch(...)`` (state ``started``), the batch writes its files, then ``record_batch(...)`` (state
   ``written``, with the file list). A batch that died between the two is superseded by name: its files are
   found by their batch id (``Lake.find_batch_files``).
4. After the source offsets are committed, ``mark_committed``.
Result: after any sequence of crashes and replays each source message's rows are in the lake exactly once:
the recorded batches of a partition never overlap (each new one retires those it overlaps), so no offset is
held by two of them.

The same batch id again (an archive re-run with the same batch size) normally rewrites the same paths. It is
nonetheless returned by ``superseded_files`` unless ``include_same=False``: the workers name files with
a chunk or region suffix (``{batch_id}-c003``) whose count depends on the cluster size, so a re-run on a
different cluster could leave some of the earlier run's files behind, duplicating rows. Deleting a batch's
old files before rewriting them costs little and closes that gap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd
from psycopg.types.json import Jsonb

from alert_broker.storage import compaction

if TYPE_CHECKING:
    from alert_broker.storage.lake import Lake
    from alert_broker.storage.postgres import SummaryStore

Ranges = Mapping[Any, tuple[int, int]]


def _norm_ranges(ranges: Ranges) -> dict[int, tuple[int, int]]:
    out: dict[int, tuple[int, int]] = {}
    for p, rng in ranges.items():
        first, last = (int(x) for x in rng)
        if first > last:
            raise ValueError(f"partition {p}: first offset {first} > last offset {last}")
        out[int(p)] = (first, last)
    return out


def _by_source(ranges: Mapping[Any, Any], source: str | None) -> dict[str, dict[int, tuple[int, int]]]:
    """Accept ``{partition: (first, last)}`` with ``source``, or ``{source: {partition: (first, last)}}``."""
    if source is not None:
        return {source: _norm_ranges(ranges)}
    if ranges and all(isinstance(v, Mapping) for v in ranges.values()):
        return {str(s): _norm_ranges(r) for s, r in ranges.items()}
    raise ValueError("ranges must be {source: {partition: (first, last)}} unless source= is given")


def _write_entry(
    store: SummaryStore,
    batch_id: str,
    state: str,
    ranges: Mapping[Any, Any],
    files: Iterable[str],
    source: str | None,
    digests: Mapping[str, Mapping[int, str]] | None = None,
) -> None:
    by_source = _by_source(ranges, source)
    as_json = {s: {str(p): [a, b] for p, (a, b) in parts.items()} for s, parts in by_source.items()}
    conn = store.conn
    with store._lock, conn.transaction():
        cur = conn.cursor()
        # a range's keys digest, given when the batch began, stays when its entry is written again
        kept = {
            (s, int(p), int(a), int(b)): d
            for s, p, a, b, d in cur.execute(
                "SELECT source, partition, first_offset, last_offset, keys_digest FROM batch_range"
                " WHERE batch_id = %s",
                (batch_id,),
            ).fetchall()
        }
        rows = [
            (batch_id, s, p, a, b, (digests or {}).get(s, {}).get(p) or kept.get((s, p, a, b)))
            for s, parts in by_source.items()
            for p, (a, b) in parts.items()
        ]
        cur.execute(
            "INSERT INTO batch_manifest (batch_id, state, ranges, files, written_at, committed_at) "
            "VALUES (%s, %s, %s, %s, now(), NULL) ON CONFLICT (batch_id) DO UPDATE SET "
            "state = EXCLUDED.state, ranges = EXCLUDED.ranges, files = EXCLUDED.files, "
            "written_at = now(), committed_at = NULL",
            (batch_id, state, Jsonb(as_json), Jsonb(sorted(set(files)))),
        )
        cur.execute("DELETE FROM batch_range WHERE batch_id = %s", (batch_id,))
        cur.executemany(
            "INSERT INTO batch_range (batch_id, source, partition, first_offset, last_offset, keys_digest) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            rows,
        )


def record_batch(
    store: SummaryStore,
    batch_id: str,
    ranges: Mapping[Any, Any],
    files: Iterable[str],
    source: str | None = None,
) -> None:
    """Record that ``batch_id`` wrote ``files`` for these offset ranges (state ``written``). Recording the same
    batch id again replaces its entry (a range's keys digest from ``begin_batch`` is kept)."""
    _write_entry(store, batch_id, "written", ranges, files, source)


def begin_batch(
    store: SummaryStore,
    batch_id: str,
    ranges: Mapping[Any, Any],
    source: str | None = None,
    digests: Mapping[str, Mapping[int, str]] | None = None,
) -> None:
    """Record, before anything is written, that ``batch_id`` is about to write for these ranges (state
    ``started``, no file list yet). If the process dies mid-batch, the replay finds this entry as superseded
    and removes the batch's files by name (``Lake.find_batch_files``), even those nobody listed. ``digests``
    (``{source: {partition: digest}}``): for an archive, the digest of the keys (files) of each range
    (``pipeline.archive.keys_digest``), which ``--resume`` checks against the archive it is given."""
    _write_entry(store, batch_id, "started", ranges, [], source, digests)


def mark_committed(store: SummaryStore, batch_id: str) -> None:
    """The batch's source offsets are committed: its files are final."""
    cur = store.conn.execute(
        "UPDATE batch_manifest SET state = 'committed', committed_at = now() WHERE batch_id = %s", (batch_id,)
    )
    if cur.rowcount == 0:
        raise KeyError(f"batch {batch_id!r} is not in the manifest (record_batch first)")


def superseded_files(
    store: SummaryStore,
    source: str,
    ranges: Ranges,
    batch_id: str | None = None,
    *,
    include_same: bool = True,
) -> list[tuple[str, list[str]]]:
    """Recorded batches of ``source`` that the new batch's ``ranges`` ({partition: (first, last)}) redo:
    those whose range overlaps it on a shared partition (``first_offset <= last`` and ``last_offset >= first``).
    Returns ``[(batch_id, files)]``, oldest first. ``batch_id`` itself is included unless ``include_same=False``
    (see the module docstring)."""
    parts = _norm_ranges(ranges)
    if not parts:
        return []
    exclude = batch_id if (batch_id is not None and not include_same) else None
    rows = store.conn.execute(
        "SELECT m.batch_id, m.files FROM batch_manifest m WHERE m.batch_id IN ("
        " SELECT r.batch_id FROM batch_range r"
        " JOIN unnest(%s::int[], %s::bigint[], %s::bigint[]) AS n(p, first_offset, last_offset)"
        " ON r.partition = n.p"
        " WHERE r.source = %s AND r.last_offset >= n.first_offset AND r.first_offset <= n.last_offset"
        " AND (%s::text IS NULL OR r.batch_id <> %s::text))"
        " ORDER BY m.written_at, m.batch_id",
        (
            list(parts),
            [a for a, _ in parts.values()],
            [z for _, z in parts.values()],
            source,
            exclude,
            exclude,
        ),
    ).fetchall()
    return [(b, list(files or [])) for b, files in rows]


def forget_batches(store: SummaryStore, batch_ids: Iterable[str]) -> int:
    """Drop batches from the manifest (after their files were deleted), and their PostgreSQL dead letters (the
    lake's went with their files): the batch that replays their messages writes those that still fail.
    Returns how many batches were there."""
    ids = list(batch_ids)
    if not ids:
        return 0
    conn = store.conn
    with store._lock, conn.transaction():
        conn.execute("DELETE FROM dead_letter WHERE batch_id = ANY(%s)", (ids,))
        conn.execute("DELETE FROM batch_range WHERE batch_id = ANY(%s)", (ids,))
        cur = conn.execute("DELETE FROM batch_manifest WHERE batch_id = ANY(%s)", (ids,))
        return cur.rowcount


def supersede(store: SummaryStore, lake: Lake, source: str, ranges: Ranges, batch_id: str) -> list[str]:
    """Steps 1-2 of the protocol in one call: delete the superseded batches' files, then forget them.
    A compacted file holding a superseded batch's rows is split back into its other batches' own files
    (``compaction.split_for_retirement``), so that retiring the rest of them later costs a delete each.
    Returns the deleted paths."""
    deleted: list[str] = []
    # under the compaction lock: a compaction must not move a batch's rows while it is being retired
    with compaction.compaction_lock(store):
        stale = superseded_files(store, source, ranges, batch_id)
        if stale and compaction.journal_pending(store):
            # a compaction or split that died part-way: its files in place before any is retired
            compaction.finish_pending(store, lake)
        stale = [(old, files or lake.find_batch_files(old)) for old, files in stale]  # died before listing
        shared: dict[str, set[str]] = {}
        for old, files in stale:
            for f in files:
                if compaction.is_compacted(f):
                    shared.setdefault(f, set()).add(old)
        for path, olds in shared.items():
            compaction.split_for_retirement(store, lake, path, olds)
        for old, files in stale:
            lake.delete_files([f for f in files if not compaction.is_compacted(f)])
            forget_batches(store, [old])
            deleted += files
    return deleted


def committed_ranges(store: SummaryStore, source: str) -> dict[int, list[tuple[int, int]]]:
    """The offset ranges of ``source`` whose batches committed, ``{partition: [(first, last), ...]}`` sorted and
    with touching ranges merged: what a resumed archive run skips (``--resume``). Batches only started or
    written (a crash before the commit) are not in it: their offsets are processed again."""
    rows = store.conn.execute(
        "SELECT r.partition, r.first_offset, r.last_offset"
        " FROM batch_range r JOIN batch_manifest m USING (batch_id)"
        " WHERE r.source = %s AND m.state = 'committed' ORDER BY r.partition, r.first_offset",
        (source,),
    ).fetchall()
    out: dict[int, list[tuple[int, int]]] = {}
    for p, first, last in rows:
        merged = out.setdefault(int(p), [])
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], int(last)))
        else:
            merged.append((int(first), int(last)))
    return out


def committed_digests(store: SummaryStore, source: str, partition: int = 0) -> list[tuple[int, int, str]]:
    """``(first, last, keys_digest)`` of each committed batch of ``source`` on ``partition`` that recorded one
    (archive batches since 7 Dec 2026; earlier ones and Kafka batches have none), in offset order."""
    rows = store.conn.execute(
        "SELECT r.first_offset, r.last_offset, r.keys_digest FROM batch_range r JOIN batch_manifest m"
        " USING (batch_id) WHERE r.source = %s AND r.partition = %s AND m.state = 'committed'"
        " AND r.keys_digest IS NOT NULL ORDER BY r.first_offset",
        (source, partition),
    ).fetchall()
    return [(int(a), int(b), str(d)) for a, b, d in rows]


def batches(store: SummaryStore, source: str | None = None) -> pd.DataFrame:
    """The manifest as a frame (one row per batch and partition), for people and tests."""
    return store.fetch_df(
        "SELECT m.batch_id, m.state, r.source, r.partition, r.first_offset, r.last_offset, r.keys_digest, m.files,"
        " m.written_at, m.committed_at FROM batch_manifest m JOIN batch_range r USING (batch_id)"
        " WHERE %s::text IS NULL OR r.source = %s::text ORDER BY r.source, r.partition, r.first_offset",
        (source, source),
    )
