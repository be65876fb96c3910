"""Lake compaction: fold the per-batch files of each table's night folder into one file, the manifest kept exact.

Why. Every batch writes one file per table, night and region task (docs/data-model.md, "Lake layout"), so a
night of LSST-sized batches leaves tens of thousands of small files per table: each costs a listing entry, a
request and a footer to every reader (dask, lsdb, ``Lake.read_table``, the integrity scan). After a night they
are final, and one file per folder reads the same rows in a fraction of the requests.

Why it goes through the manifest. The batch manifest (``storage.manifest``) is what makes the lake
exactly-once: a replay retires a recorded batch by deleting the files the manifest lists for it. A compacted file
holds the rows of many batches, so the manifest lists it under each of them, and retiring one of them splits
the file back into the other batches' own files (every pipeline row carries its ``batch_id``;
``split_for_retirement``, called by ``storage.manifest.supersede``) instead of deleting it.

The protocol, per run of files (a folder, or a part of a big one: ``MAX_BYTES``) (``compact``):
1. Only a folder whose every file belongs to a *committed* batch is compacted: a batch in flight, an orphan or a
   file the manifest does not know leaves the folder as it is (``plan``). Each source file's ``batch_id``
   column must name the batch the manifest files it under (a file without the column gets it).
2. The sources are read oldest write first (``broker.written_at_ns``; later rows win where readers deduplicate)
   and written as one hidden staged file (``.compacted-{digest}.parquet.staged``: readers skip dot-names).
3. Under the compaction lock (a PostgreSQL advisory lock that ``manifest.supersede`` takes too), one
   transaction checks that every batch is still committed with the same files, records the move in
   ``lake_compaction`` and replaces the sources by the target in each batch's file list.
4. The staged file is renamed to its target, the sources deleted, the journal row removed (``finish_pending``).
   A crash after step 3 is finished by the next compaction, the next run's start (``recover``) or the next
   batch's ``supersede``; one before it leaves a hidden staged file that the next compaction of the folder
   removes. Between the rename and the deletes a reader may see a row twice (never none); readers that
   deduplicate by key see each once.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from psycopg.types.json import Jsonb

from alert_broker.storage.lake import META_BATCH, META_WRITTEN, NATURAL_KEYS, Lake, dictionary_columns
from alert_broker.storage.secrets import redact

if TYPE_CHECKING:
    from alert_broker.storage.postgres import SummaryStore

log = logging.getLogger(__name__)

#: Compacted files are named ``compacted-{digest}.parquet``: the manifest lists them under several batches.
PREFIX = "compacted-"
STAGED_SUFFIX = ".staged"
#: Tables never compacted: the raw archive's rows carry no batch id (and its files are large already).
EXCLUDED_TABLES = frozenset({"raw"})
#: The advisory lock that compaction's manifest update and ``manifest.supersede`` share.
LOCK_ID = 7_341_902_118
META_SOURCES = b"broker.compacted_from"
#: Each batch's own write time (ns) in a compacted file, JSON ``{batch_id: ns}``: what a split gives back.
META_BATCH_WRITTEN = b"broker.compacted_batch_written"
#: A split file (a compacted file's rows of one batch, after another batch's retirement) is named
#: ``{batch_id}{SPLIT_MARK}{digest of the compacted file}.parquet``.
SPLIT_MARK = "-s"
ROW_GROUP = 131_072
#: A compacted file holds at most about this many bytes of source files (and is built in memory): a folder
#: bigger than this becomes several files.
MAX_BYTES = 128 * 2**20


def is_compacted(path: str) -> bool:
    """Whether ``path`` is a compacted file (shared by several batches) rather than one batch's own."""
    return os.path.basename(str(path)).startswith(PREFIX)


@contextlib.contextmanager
def compaction_lock(store: SummaryStore) -> Iterator[None]:
    """Hold the compaction lock (session-level on the store's connection, so it spans file operations outside a
    transaction; other threads may use the connection meanwhile, as psycopg allows)."""
    conn = store.conn
    conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_ID,))
    try:
        yield
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_ID,))


@dataclass
class FolderPlan:
    """Files of one folder to become one compacted file: each with the batches the manifest lists it under
    (several for a file compacted before), and their size in bytes."""

    folder: str
    table: str
    files: dict[str, frozenset[str]]
    bytes: int = 0

    @property
    def batches(self) -> list[str]:
        return sorted(set().union(*self.files.values()))


@dataclass
class CompactionReport:
    """What a compaction did (and the ``pipeline_run`` row's summary)."""

    folders: int = 0  # folders with at least one new compacted file
    files_merged: int = 0
    files_written: int = 0
    rows: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> folders
    finished_pending: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def render(self) -> str:
        lines = [
            f"lake compaction: {self.folders} folders, {self.files_merged} files -> {self.files_written}, "
            f"{self.rows} rows, {self.bytes_before / 1e6:.1f} MB -> {self.bytes_after / 1e6:.1f} MB "
            f"in {self.seconds:.1f} s"
        ]
        lines += [f"  left alone ({n} folders): {why}" for why, n in sorted(self.skipped.items())]
        if self.finished_pending:
            lines.append(f"  finished {self.finished_pending} compactions an earlier process left part-way")
        return "\n".join(lines)


def _table_of(lake: Lake, fs_path: str) -> tuple[str, str] | None:
    """(table, folder) of a file at ``{lake}/{table}/{key}=N/name.parquet``; None for anything else."""
    rel = os.path.relpath(fs_path, lake.root) if lake.local else fs_path[len(lake.root) + 1 :]
    parts = rel.split("/")
    if len(parts) != 3 or "=" not in parts[1]:
        return None
    return parts[0], os.path.dirname(fs_path)


def plan(
    store: SummaryStore,
    lake: Lake,
    tables: Iterable[str] | None = None,
    nights: Iterable[int] | None = None,
    min_files: int = 2,
    report: CompactionReport | None = None,
    max_bytes: int = MAX_BYTES,
) -> list[FolderPlan]:
    """What to compact: in each folder with ``min_files`` or more files, every one of a committed batch, runs of
    consecutive files (in write order) of up to ``max_bytes`` together, each run to become one file. A file
    that big already stays as it is and ends a run: merging files written before and after it would put
    the earlier rows after its rows in write order, where readers let later rows win."""
    wanted_tables = set(tables) if tables else None
    wanted_nights = {int(n) for n in nights} if nights else None
    owner: dict[str, set[str]] = {}  # fs path -> the committed batches listing it
    busy: set[str] = set()  # folders a batch not yet committed wrote to
    for batch_id, state, files in store.conn.execute("SELECT batch_id, state, files FROM batch_manifest"):
        for f in files or []:
            fs_path = lake._fs_path(f)
            if state == "committed":
                owner.setdefault(fs_path, set()).add(batch_id)
            else:
                busy.add(os.path.dirname(fs_path))
    by_folder: dict[str, tuple[str, dict[str, frozenset[str]]]] = {}
    for fs_path, batch_ids in owner.items():
        where = _table_of(lake, fs_path)
        if where is None or where[0] in EXCLUDED_TABLES:
            continue
        table, folder = where
        if wanted_tables is not None and table not in wanted_tables:
            continue
        if wanted_nights is not None and int(folder.rsplit("=", 1)[1]) not in wanted_nights:
            continue
        by_folder.setdefault(folder, (table, {}))[1][fs_path] = frozenset(batch_ids)
    out = []
    skipped = report.skipped if report is not None else {}
    if not lake.local:
        lake.fs.invalidate_cache()
    for folder, (table, files) in sorted(by_folder.items()):
        if len(files) < min_files:
            continue
        if folder in busy:
            skipped["a batch not yet committed wrote here"] = (
                skipped.get("a batch not yet committed wrote here", 0) + 1
            )
            continue
        listed = {str(e["name"]): int(e["size"]) for e in lake.fs.ls(folder, detail=True)}
        present = {
            p: n
            for p, n in listed.items()
            if p.endswith(".parquet") and not os.path.basename(p).startswith((".", "_"))
        }
        if set(present) - set(files):
            why = "files the manifest does not list as committed"
            skipped[why] = skipped.get(why, 0) + 1
            continue
        files = {p: b for p, b in files.items() if p in present}  # a listed file may be gone (an empty write)
        if len(files) < min_files:
            continue
        run: list[str] = []
        size = 0
        written = dict(zip(files, _map(lake, lambda p: _written(lake, p), list(files)), strict=True))
        for path in sorted(files, key=lambda p: (written[p], p)):
            if present[path] >= max_bytes or (run and size + present[path] > max_bytes):
                out += _chunk(folder, table, files, run, present)
                run, size = [], 0
                if present[path] >= max_bytes:
                    continue
            run.append(path)
            size += present[path]
        out += _chunk(folder, table, files, run, present)
    return out


def _chunk(
    folder: str, table: str, files: dict[str, frozenset[str]], run: list[str], sizes: dict[str, int]
) -> list[FolderPlan]:
    if len(run) < 2:
        return []
    return [FolderPlan(folder, table, {p: files[p] for p in run}, sum(sizes[p] for p in run))]


def _map(lake: Lake, fn, items: list):
    """``fn`` over ``items`` in threads: a lake file's cost is mostly its request (S3) or open (local)."""
    if len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max(1, min(8 if lake.local else 16, len(items)))) as pool:
        return list(pool.map(fn, items))


def _written(lake: Lake, path: str) -> int:
    """A lake file's write time (ns) from its footer (``broker.written_at_ns``): what readers order files by."""
    if lake.local:
        meta = pq.read_schema(path).metadata or {}
    else:
        with lake.fs.open(path, "rb") as fh:
            meta = pq.read_schema(fh).metadata or {}
    return int(meta.get(META_WRITTEN, b"0"))


def _read_file(lake: Lake, path: str) -> tuple[dict[bytes, bytes], pa.Table]:
    """A lake file's footer metadata and rows."""
    if lake.local:  # pyarrow's own file reading: no Python file object in between
        pf = pq.ParquetFile(path)
        return dict(pf.schema_arrow.metadata or {}), pf.read()
    with lake.fs.open(path, "rb") as fh:
        pf = pq.ParquetFile(fh)
        return dict(pf.schema_arrow.metadata or {}), pf.read()


def _read_source(lake: Lake, path: str, batch_id: str) -> tuple[int, pa.Table, dict[bytes, bytes]]:
    """A source file's write time, rows (with a ``batch_id`` column: added if the file has none) and metadata."""
    meta, table = _read_file(lake, path)
    if "batch_id" not in table.column_names:
        table = table.append_column("batch_id", pa.array([batch_id] * table.num_rows, pa.string()))
    return int(meta.get(META_WRITTEN, b"0")), table.replace_schema_metadata(None), meta


def _merge(lake: Lake, item: FolderPlan) -> tuple[pa.Table, dict[bytes, bytes], int] | str:
    """The folder's rows as one table (oldest write first), its metadata and the bytes read; a reason string
    when the folder cannot be compacted safely."""
    if any(len(owners) > 1 and not is_compacted(path) for path, owners in item.files.items()):
        return "a batch file listed under several batches"
    parts = []
    read = _map(lake, lambda p: _read_source(lake, p, min(item.files[p])), list(item.files))
    for path, (written, table, meta) in zip(item.files, read, strict=True):
        ids = {b for b in pc.unique(table.column("batch_id")).to_pylist() if b is not None}
        if not ids <= item.files[path] or table.column("batch_id").null_count:
            return "rows whose batch_id is not the batch that wrote the file"
        parts.append((written, path, table, meta))
    parts.sort(key=lambda p: (p[0], p[1]))
    batch_written: dict[str, int] = {}
    for written, path, _, meta in parts:
        for b, ns in _batch_times(meta, item.files[path], written).items():
            batch_written[b] = max(batch_written.get(b, 0), ns)
    try:
        merged = pa.concat_tables([p[2] for p in parts], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return "files whose schemas do not merge"
    meta: dict[bytes, bytes] = {}
    # pandas' metadata names the columns of one file: kept only when it describes the merged one
    for _, _, table, m in reversed(parts):
        if b"pandas" in m and table.schema.names == merged.schema.names:
            meta[b"pandas"] = m[b"pandas"]
            break
    meta[META_BATCH] = b"compacted"
    meta[META_WRITTEN] = str(max(p[0] for p in parts)).encode()
    meta[META_SOURCES] = json.dumps(item.batches).encode()
    meta[META_BATCH_WRITTEN] = json.dumps(batch_written, sort_keys=True).encode()
    return merged, meta, item.bytes


def _batch_times(meta: dict[bytes, bytes], batches: Iterable[str], written: int) -> dict[str, int]:
    """Each batch's write time in a file: a compacted file's own record of them, else the file's write time."""
    known = json.loads(meta.get(META_BATCH_WRITTEN, b"{}"))
    return {b: int(known.get(b, written)) for b in batches}


def _target(item: FolderPlan) -> str:
    digest = hashlib.sha1("\n".join(sorted(os.path.basename(p) for p in item.files)).encode()).hexdigest()[
        :16
    ]
    return f"{item.folder}/{PREFIX}{digest}.parquet"


def _staged(target: str) -> str:
    return f"{os.path.dirname(target)}/.{os.path.basename(target)}{STAGED_SUFFIX}"


def _record(store: SummaryStore, item: FolderPlan, target: str, staged: str, lake: Lake) -> bool:
    """Step 3: under the lock, in one transaction. False (nothing changed) if a batch moved meanwhile."""
    batches = item.batches
    conn = store.conn
    with store._lock, conn.transaction():
        rows = conn.execute(
            "SELECT batch_id, state, files FROM batch_manifest WHERE batch_id = ANY(%s) FOR UPDATE",
            (batches,),
        ).fetchall()
        current = {b: (s, [lake._fs_path(f) for f in files or []]) for b, s, files in rows}
        for path, owners in item.files.items():
            for b in owners:
                state, files = current.get(b, (None, []))
                if state != "committed" or path not in files:
                    return False
        updates = []
        for b in batches:
            kept = [f for f in current[b][1] if f not in item.files]
            updates.append((Jsonb([lake._public(f) for f in sorted({*kept, target})]), b))
        conn.cursor().executemany("UPDATE batch_manifest SET files = %s WHERE batch_id = %s", updates)
        conn.execute(
            "INSERT INTO lake_compaction (target, staged, sources, batches, created_at)"
            " VALUES (%s, %s, %s, %s, now()) ON CONFLICT (target) DO UPDATE SET staged = EXCLUDED.staged,"
            " sources = EXCLUDED.sources, batches = EXCLUDED.batches, created_at = now()",
            (target, staged, Jsonb(sorted(p for p in item.files if p != target)), Jsonb(batches)),
        )
    return True


def _move(lake: Lake, src: str, dst: str) -> None:
    if lake.local:
        os.replace(src, dst)
    else:
        lake.fs.mv(src, dst)
        lake.fs.invalidate_cache()


def finish_pending(store: SummaryStore, lake: Lake) -> int:
    """Step 4 for every compaction the journal holds (a crashed process's too): rename the staged file into
    place if it is still staged, delete the sources, drop the journal row. Call under the lock."""
    rows = store.conn.execute(
        "SELECT target, staged, sources FROM lake_compaction ORDER BY created_at, target"
    ).fetchall()
    # every new file in place before any source goes (a split's files share one source): a reader may see a
    # row twice meanwhile, never none
    for target, staged, _ in rows:
        if lake.fs.exists(staged):
            _move(lake, staged, target)
    targets = {t for t, _, _ in rows}
    for target, _, sources in rows:
        lake.delete_files([s for s in sources or [] if s not in targets])
        store.conn.execute("DELETE FROM lake_compaction WHERE target = %s", (target,))
    return len(rows)


def recover(store: SummaryStore, lake: Lake) -> int:
    """Finish the compactions a dead process left after its manifest update (``finish_pending`` under the lock);
    the journal is looked at first, so a run with nothing to finish takes no lock. Returns how many."""
    if not store.conn.execute("SELECT EXISTS (SELECT 1 FROM lake_compaction)").fetchone()[0]:
        return 0
    with compaction_lock(store):
        return finish_pending(store, lake)


def journal_pending(store: SummaryStore) -> bool:
    """Whether a compaction or split awaits its step 4 (cheap: one indexed query)."""
    return bool(store.conn.execute("SELECT EXISTS (SELECT 1 FROM lake_compaction)").fetchone()[0])


def split_for_retirement(store: SummaryStore, lake: Lake, path: str, retiring: Iterable[str]) -> int:
    """Retire ``retiring`` batches from the compacted file ``path`` by splitting it: every other batch's rows
    become that batch's own file again (``{batch}-s{digest}.parquet``, with the batch's write time, so readers
    still let later writes win), the manifest lists each batch's file instead of ``path``, and ``path`` goes.

    Why split rather than rewrite the file without those rows: a re-run of a whole compacted night retires its
    batches one by one, and a rewrite per retirement copies the file once per batch it holds; after a split, each
    later retirement deletes one small file. The steps are the compaction's (staged files, then one transaction
    with journal rows, then ``finish_pending``), so a crash at any point is finished or undone the same way.
    Call under the compaction lock (``manifest.supersede`` does). Returns the files written."""
    retiring = set(retiring)
    fs_path = lake._fs_path(path)
    try:
        meta, table = _read_file(lake, fs_path)
    except FileNotFoundError:
        return 0
    ids = table.column("batch_id")
    order = [b for b in dict.fromkeys(ids.to_pylist()) if b is not None and b not in retiring]
    written = int(meta.get(META_WRITTEN, b"0"))
    times = json.loads(meta.get(META_BATCH_WRITTEN, b"{}"))
    if len(times) < len(order):  # a file compacted before batch times were kept: its row order is write order
        times = {b: written - (len(order) - 1 - k) for k, b in enumerate(order)}
    digest = os.path.basename(fs_path)[len(PREFIX) : -len(".parquet")]
    folder = os.path.dirname(fs_path)
    # an earlier try's staged files (it died before its transaction): nobody lists them
    for p in lake.fs.ls(folder, detail=False):
        name = os.path.basename(str(p))
        if name.startswith(".") and name.endswith(f"{SPLIT_MARK}{digest}.parquet{STAGED_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                lake.fs.rm(str(p))
    outputs: dict[str, tuple[str, str]] = {}
    for b in order:
        rows = table.filter(pc.equal(ids, b))
        own = {k: v for k, v in meta.items() if k not in (META_SOURCES, META_BATCH_WRITTEN)}
        own[META_BATCH] = b.encode()
        own[META_WRITTEN] = str(int(times[b])).encode()
        target = f"{folder}/{b}{SPLIT_MARK}{digest}.parquet"
        staged = _staged(target)
        rows = rows.replace_schema_metadata(own)
        lake.write_whole(
            rows, staged, use_dictionary=dictionary_columns(rows.schema), row_group_size=ROW_GROUP
        )
        outputs[b] = (target, staged)
    # the batches listing the file: the ones it was compacted from (its footer) and any whose rows it holds
    owners = set(json.loads(meta.get(META_SOURCES, b"[]"))) | set(order) | retiring
    conn = store.conn
    with store._lock, conn.transaction():
        listed = conn.execute(
            "SELECT batch_id, files FROM batch_manifest WHERE batch_id = ANY(%s) FOR UPDATE",
            (sorted(owners),),
        ).fetchall()
        updates = []
        for b, files in listed:
            paths = [lake._fs_path(f) for f in files or []]
            if fs_path not in paths or b in retiring:
                continue  # the retiring batches are forgotten by the caller, files and all
            kept = [f for f in paths if f != fs_path]
            if b in outputs:
                kept.append(outputs[b][0])
            updates.append((Jsonb([lake._public(f) for f in sorted(set(kept))]), b))
        conn.cursor().executemany("UPDATE batch_manifest SET files = %s WHERE batch_id = %s", updates)
        for b, (target, staged) in outputs.items():
            conn.execute(
                "INSERT INTO lake_compaction (target, staged, sources, batches, created_at)"
                " VALUES (%s, %s, %s, %s, now()) ON CONFLICT (target) DO UPDATE SET staged = EXCLUDED.staged,"
                " sources = EXCLUDED.sources, batches = EXCLUDED.batches, created_at = now()",
                (target, staged, Jsonb([fs_path]), Jsonb([b])),
            )
    if outputs:
        finish_pending(store, lake)
    else:  # every batch of the file retires: the file only goes, as a batch's own file would
        lake.delete_files([fs_path])
    log.info(
        "lake: split %s into %d batch files (retiring %s)", path, len(outputs), ", ".join(sorted(retiring))
    )
    return len(outputs)


def _remove_stale_staged(lake: Lake, folder: str) -> None:
    """Staged (or half-written) files of a compaction or a split that died before its manifest update: nobody
    lists them. Call under the lock, after ``finish_pending`` (so no journal row names one)."""
    for p in lake.fs.ls(folder, detail=False):
        name = os.path.basename(str(p))
        staged = name.endswith(STAGED_SUFFIX) or (
            name.lstrip(".").startswith(PREFIX) and name.endswith(".tmp")
        )
        if name.startswith(".") and staged:
            with contextlib.suppress(FileNotFoundError):
                lake.fs.rm(str(p))


def compact(
    store: SummaryStore,
    lake: Lake,
    tables: Iterable[str] | None = None,
    nights: Iterable[int] | None = None,
    min_files: int = 2,
    max_bytes: int = MAX_BYTES,
    mapper: Mapper | None = None,
) -> CompactionReport:
    """Compact every eligible folder (``plan``) of ``tables`` and ``nights`` (default all). Safe beside a
    running night (its folders in flight are left alone) and beside replays (the lock); one compaction runs at a
    time (another one returns at once, saying so). ``mapper`` runs the merges (default: two threads here; the
    pipeline passes one that runs them on its Dask workers); the manifest is only ever written from here."""
    t0 = time.perf_counter()
    report = CompactionReport()
    with store.exclusive("lake-compaction") as mine:
        if not mine:
            report.skipped["another compaction is running"] = 1
            return report
        with compaction_lock(store):
            report.finished_pending = finish_pending(store, lake)
        items = plan(store, lake, tables, nights, min_files, report, max_bytes)
        _compact_folders(store, lake, items, report, mapper)
    report.seconds = round(time.perf_counter() - t0, 3)
    return report


RUN_SOURCE = "lake-compaction"


def status(lake: Lake, tables: Iterable[str] | None = None) -> list[dict[str, object]]:
    """Per table of the lake (``tables``, default every per-batch table it holds): night folders, files, bytes,
    compacted files and the most files one folder holds: whether a compaction is due. Lists the lake only."""
    if not lake.local:
        lake.fs.invalidate_cache()
    names = list(tables) if tables else sorted(t for t in NATURAL_KEYS if lake.fs.exists(lake._fs_path(t)))
    out = []
    for table in names:
        per_folder: dict[str, int] = {}
        size = compacted = 0
        base = lake._fs_path(table)
        found = lake.fs.find(base, detail=True) if lake.fs.exists(base) else {}
        for path, info in found.items():
            name = os.path.basename(str(path))
            if not name.endswith(".parquet") or name.startswith((".", "_")):
                continue
            folder = os.path.dirname(str(path))
            per_folder[folder] = per_folder.get(folder, 0) + 1
            size += int(info.get("size") or 0)
            compacted += is_compacted(name)
        files = sum(per_folder.values())
        nights = [int(v) for f in per_folder if (v := os.path.basename(f).partition("=")[2]).isdigit()]
        out.append(
            {
                "table": table,
                "first_night": min(nights, default=None),  # what a retention (broker lake expire) looks at
                "last_night": max(nights, default=None),
                "folders": len(per_folder),
                "files": files,
                "bytes": size,
                "compacted_files": compacted,
                "max_files_per_folder": max(per_folder.values(), default=0),
                # night folders only (dead letters have none), never the raw archive (its rows name no batch)
                "folders_to_compact": 0
                if table in EXCLUDED_TABLES
                else sum(n > 1 and "=" in os.path.basename(f) for f, n in per_folder.items()),
            }
        )
    return out


def recorded_compact(
    store: SummaryStore, lake: Lake, config: dict[str, object] | None = None, **kwargs: object
) -> CompactionReport:
    """``compact`` recorded as a ``pipeline_run`` row of source ``lake-compaction`` (``GET /runs``, ``broker
    runs``): status ``ok``, ``busy`` (another compaction was running) or ``failed``, with its counts."""
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    store.start_run(run_id, RUN_SOURCE, config or {})
    try:
        report = compact(store, lake, **kwargs)  # type: ignore[arg-type]
    except BaseException as err:
        store.finish_run(run_id, "failed", {"error": f"{type(err).__name__}: {redact(str(err))}"})
        raise
    counts = {k: getattr(report, k) for k in ("folders", "files_merged", "files_written", "rows")}
    busy = "another compaction is running" in report.skipped
    store.finish_run(run_id, "busy" if busy else "ok", report.as_dict(), counts)
    return report


@dataclass(frozen=True)
class Built:
    """One run of files merged and written as a staged file (steps 1-2), or why it was not (``why``): what the
    process that owns the manifest records and moves into place."""

    item: FolderPlan
    target: str = ""
    staged: str = ""
    rows: int = 0
    bytes_written: int = 0
    why: str | None = None


def build(lake: Lake, item: FolderPlan) -> Built:
    """Steps 1-2 for one run of files: read, check, merge, write the staged file. File work only (no
    PostgreSQL), so it runs wherever the lake can be reached: a thread here, or a Dask worker (``Mapper``)."""
    merged = _merge(lake, item)
    if isinstance(merged, str):
        return Built(item, why=merged)
    table, meta, _ = merged
    target = _target(item)
    staged = _staged(target)
    table = table.replace_schema_metadata(meta)
    lake.write_whole(table, staged, use_dictionary=dictionary_columns(table.schema), row_group_size=ROW_GROUP)
    return Built(item, target, staged, table.num_rows, int(lake.fs.size(staged)))


#: Runs ``build`` over the planned runs and yields each result as it is done, in any order.
Mapper = Callable[[Callable[[FolderPlan], Built], list[FolderPlan]], Iterable[Built]]
THREADS = 2


def threads(n: int = THREADS) -> Mapper:
    """The default ``Mapper``: ``n`` runs at a time in this process (pyarrow reads, merges and writes without
    the GIL; each run holds at most ``MAX_BYTES`` of Parquet in memory)."""

    def run(fn: Callable[[FolderPlan], Built], items: list[FolderPlan]) -> Iterator[Built]:
        with ThreadPoolExecutor(max(1, n)) as pool:
            for fut in as_completed([pool.submit(fn, i) for i in items]):
                yield fut.result()

    return run


def _compact_folders(
    store: SummaryStore, lake: Lake, items: list[FolderPlan], report: CompactionReport, mapper: Mapper | None
) -> None:
    with compaction_lock(store):
        for folder in sorted({i.folder for i in items}):
            _remove_stale_staged(lake, folder)
    folders: set[str] = set()
    for built in (mapper or threads())(functools.partial(build, lake), items):
        item = built.item
        if built.why is not None:
            report.skipped[built.why] = report.skipped.get(built.why, 0) + 1
            log.warning("lake compaction: %s left alone: %s", item.folder, built.why)
            continue
        with compaction_lock(store):
            if not _record(store, item, built.target, built.staged, lake):
                with contextlib.suppress(FileNotFoundError):
                    lake.fs.rm(built.staged)
                why = "a batch of the folder was replayed meanwhile"
                report.skipped[why] = report.skipped.get(why, 0) + 1
                continue
            finish_pending(store, lake)
        folders.add(item.folder)
        report.folders = len(folders)
        report.files_merged += len(item.files)
        report.files_written += 1
        report.rows += built.rows
        report.bytes_before += item.bytes
        report.bytes_after += built.bytes_written
