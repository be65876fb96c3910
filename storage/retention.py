"""Raw-packet retention: delete the raw archive's nights before a cutoff, and remember which nights went.

Why. The raw archive keeps every packet as it arrived, cutouts included: most of the lake's bytes (a ZTF night
with stamps: ~60 % of its lake, the history store most of the rest; LSST packets carry uncompressed cutouts,
~80 kB an alert, ~0.8 TB for a night of 10^7). A broker on one server keeps the summaries, light curves,
features and classes for good and the packets for as long as its disk allows: ``broker lake expire
--keep-days N`` (or ``--before YYYYMMDD``), daily. What is lost with a packet: its stamps and raw bytes
(``GET /alerts/{candid}/stamps``, ``/raw``, ``broker fetch``: HTTP 410 naming the expiry) and the stamp
re-scoring of the alerts it held (``broker reclassify`` counts them as lost). Nothing else reads it.

How (``expire``), per night folder of the raw table (``night=YYYYMMDD``, the alert's night) before the cutoff,
under the compaction lock (so no batch is being retired or compacted meanwhile):
1. a folder a batch not yet committed wrote to is left (a late alert of an old night, in flight);
2. one transaction records the night in ``lake_expired`` (table, night, when, files and bytes) and takes its
   files out of the batch manifest's file lists;
3. the files are deleted.
A crash between 2 and 3 leaves unlisted files in a night that ``lake_expired`` names; the next run deletes them
(a night is expired again as long as files remain). A replay that writes an expired night again (an archive
re-run) gets its packets expired by the next run, as the policy says.
"""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from psycopg.types.json import Jsonb

from alert_broker.storage.archive import RAW_TABLE
from alert_broker.storage.compaction import compaction_lock
from alert_broker.storage.lake import Lake, partition_key
from alert_broker.storage.secrets import redact

if TYPE_CHECKING:
    from alert_broker.storage.postgres import SummaryStore

RUN_SOURCE = "lake-expire"
#: The tables whose nights can expire: only the raw archive (the rest is small and what the broker serves).
TABLES = (RAW_TABLE,)


@dataclass
class ExpiryReport:
    """What an expiry did (or, ``dry_run``, would do): the ``pipeline_run`` row's summary."""

    table: str
    before: int
    dry_run: bool = False
    nights: list[int] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    skipped: dict[int, str] = field(default_factory=dict)  # night -> why it was left
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["skipped"] = {str(k): v for k, v in self.skipped.items()}
        return out

    def render(self) -> str:
        verb = "would expire" if self.dry_run else "expired"
        head = (
            f"{self.table}: {verb} {len(self.nights)} nights before {self.before} "
            f"({self.files} files, {self.bytes / 1e6:.1f} MB) in {self.seconds:.1f} s"
        )
        lines = [head]
        if self.nights:
            lines.append(f"  nights {self.nights[0]} .. {self.nights[-1]}")
        lines += [f"  left {n}: {why}" for n, why in sorted(self.skipped.items())]
        return "\n".join(lines)


def cutoff(keep_days: int, today: dt.date | None = None) -> int:
    """The first night kept when ``keep_days`` nights are kept (UTC): nights before it expire."""
    if keep_days < 1:
        raise ValueError(f"keep at least one day of raw packets (got --keep-days {keep_days})")
    today = today or dt.datetime.now(dt.UTC).date()
    first = today - dt.timedelta(days=keep_days - 1)
    return int(first.strftime("%Y%m%d"))


def _night_folders(lake: Lake, table: str) -> dict[int, str]:
    """{night: folder} of a table's partitions."""
    base = lake._fs_path(table)
    if not lake.local:
        lake.fs.invalidate_cache()
    if not lake.fs.exists(base):
        return {}
    key = partition_key(table)
    out = {}
    for p in lake.fs.ls(base, detail=False):
        name = os.path.basename(str(p).rstrip("/"))
        if name.startswith(f"{key}=") and name.split("=", 1)[1].isdigit():
            out[int(name.split("=", 1)[1])] = str(p).rstrip("/")
    return out


def _files(lake: Lake, folder: str) -> dict[str, int]:
    """{path: bytes} of a folder's files, hidden ones (a write in progress) too."""
    if not lake.fs.exists(folder):
        return {}
    return {
        str(e["name"]): int(e.get("size") or 0)
        for e in lake.fs.ls(folder, detail=True)
        if e["type"] == "file"
    }


def _busy_folders(store: SummaryStore, lake: Lake) -> set[str]:
    rows = store.conn.execute("SELECT files FROM batch_manifest WHERE state <> 'committed'").fetchall()
    return {os.path.dirname(lake._fs_path(f)) for (files,) in rows for f in files or []}


def _record(
    store: SummaryStore, lake: Lake, table: str, night: int, folder: str, files: dict[str, int]
) -> None:
    """Step 2: the night recorded and its files out of the manifest, in one transaction."""
    prefix = lake._public(folder) + "/"
    conn = store.conn
    with store._lock, conn.transaction():
        listed = conn.execute(
            "SELECT batch_id, files FROM batch_manifest WHERE files::text LIKE %s FOR UPDATE",
            ("%" + prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%",),
        ).fetchall()
        updates = []
        for batch_id, paths in listed:
            kept = [p for p in paths or [] if os.path.dirname(lake._fs_path(p)) != folder]
            if len(kept) != len(paths or []):
                updates.append((Jsonb(kept), batch_id))
        conn.cursor().executemany("UPDATE batch_manifest SET files = %s WHERE batch_id = %s", updates)
        conn.execute(
            "INSERT INTO lake_expired (table_name, night, expired_at, files, bytes) VALUES (%s, %s, now(), %s, %s)"
            " ON CONFLICT (table_name, night) DO UPDATE SET expired_at = now(),"
            " files = lake_expired.files + EXCLUDED.files, bytes = lake_expired.bytes + EXCLUDED.bytes",
            (table, night, len(files), sum(files.values())),
        )


def expire(
    store: SummaryStore, lake: Lake, before: int, table: str = RAW_TABLE, dry_run: bool = False
) -> ExpiryReport:
    """Delete ``table``'s night folders before night ``before`` (YYYYMMDD), recording each night in
    ``lake_expired`` and keeping the batch manifest exact (module docstring). ``dry_run``: only report."""
    if table not in TABLES:
        raise ValueError(f"only {', '.join(TABLES)} can expire (got {table!r})")
    t0 = time.perf_counter()
    report = ExpiryReport(table, int(before), dry_run)
    with compaction_lock(store):
        busy = _busy_folders(store, lake)
        for night, folder in sorted(_night_folders(lake, table).items()):
            if night >= before:
                continue
            if folder in busy:
                report.skipped[night] = "a batch not yet committed wrote here"
                continue
            files = _files(lake, folder)
            if not files:
                continue
            report.nights.append(night)
            report.files += len(files)
            report.bytes += sum(files.values())
            if dry_run:
                continue
            _record(store, lake, table, night, folder, files)
            lake.delete_files(list(files))
    report.seconds = round(time.perf_counter() - t0, 3)
    return report


def recorded_expire(
    store: SummaryStore, lake: Lake, before: int, config: dict[str, object] | None = None, **kwargs: object
) -> ExpiryReport:
    """``expire`` recorded as a ``pipeline_run`` row of source ``lake-expire`` (``GET /runs``, ``broker runs``)."""
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    store.start_run(run_id, RUN_SOURCE, config or {})
    try:
        report = expire(store, lake, before, **kwargs)  # type: ignore[arg-type]
    except BaseException as err:
        store.finish_run(run_id, "failed", {"error": f"{type(err).__name__}: {redact(str(err))}"})
        raise
    counts = {"nights": len(report.nights), "files": report.files, "bytes": report.bytes}
    store.finish_run(run_id, "ok", report.as_dict(), counts)
    return report


#: When a table's night expired (one row, or none): ``(table, night)``.
EXPIRED_AT_SQL = "SELECT expired_at FROM lake_expired WHERE table_name = %s AND night = %s"


def packet_gone(lake: Lake, expired: dt.datetime | None, path: str | None) -> bool:
    """Whether an alert's raw packet went with its night (``expired``: ``EXPIRED_AT_SQL``'s answer): the night
    expired and the file the packet was written to is not there (a replay may have written the night again)."""
    return expired is not None and not (path and lake.fs.exists(lake._fs_path(path)))


def gone_message(candid: int, night: int, expired: dt.datetime) -> str:
    return (
        f"the raw packet of alert {candid} (night {night}) and its stamps were removed by the archive's retention "
        f"on {expired:%Y-%m-%d}; its summary, light curve, features and classes are kept"
    )
