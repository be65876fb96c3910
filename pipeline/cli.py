"""``broker`` — the command line. Every flag of ``run-night`` mirrors a setting in pipeline/config.py."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pandas as pd
import psycopg
from confluent_kafka import KafkaException
from distributed import Client

from alert_broker.api.publish import PUBLISHED_TABLES, publish
from alert_broker.api.server import ServeConfig, serve
from alert_broker.classifiers.training import register as register_training
from alert_broker.pipeline import catalog_cli, integrity, listen, watchlist_cli
from alert_broker.pipeline.archive import iter_archive
from alert_broker.pipeline.config import ENV_PREFIX, load_settings, settings_fields
from alert_broker.pipeline.driver import (
    PostgresUnavailable,
    dask_mapper,
    lc_models,
    run,
    stamp_models,
)
from alert_broker.pipeline.filters import FilterError, compile_expression
from alert_broker.pipeline.kafka import KafkaUnavailable, ensure_topic, parse_kafka_url, produce
from alert_broker.pipeline.logs import configure_logging
from alert_broker.pipeline.reclassify import NoStoredFeatures, reclassify_models
from alert_broker.pipeline.resources import warm_up_science
from alert_broker.pipeline.shutdown import StopRequest
from alert_broker.pipeline.sources import ResumeRefused
from alert_broker.simulator.cli import register as register_simulator
from alert_broker.storage import (
    NATURAL_KEYS,
    EmbeddedPostgres,
    Lake,
    LakeUnavailable,
    RawArchive,
    SummaryStore,
    compaction,
    dead_letters,
    retention,
)
from alert_broker.storage.archive import RAW_TABLE
from alert_broker.storage.history import HISTORY_KEYS, HistoryStore
from alert_broker.storage.secrets import redact

log = logging.getLogger("alert_broker.pipeline.cli")


def _add_settings_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="a TOML file of settings (env: BROKER_CONFIG)")
    for f in settings_fields():
        flag = "--" + f.name.replace("_", "-")
        help_ = f"{f.metadata.get('help', '')} (env: {ENV_PREFIX}{f.name.upper()})"
        if f.type in ("bool", bool):
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_)
        elif f.metadata.get("repeat"):  # e.g. several sources read side by side
            p.add_argument(flag, dest=f.name, action="append", default=None, help=help_)
        else:
            p.add_argument(flag, dest=f.name, default=None, help=help_)


def _settings(args: argparse.Namespace):
    overrides = {f.name: getattr(args, f.name, None) for f in settings_fields()}
    for name, value in overrides.items():
        if isinstance(value, list):
            overrides[name] = ";".join(value)
    settings = load_settings(args.config, overrides=overrides)
    configure_logging(settings.log_level, settings.log_format)
    return settings


#: Exit status of a night stopped because PostgreSQL stayed unreachable past --pg-retry-s (docs/guarantees.md).
EXIT_POSTGRES_DOWN = 3
#: Exit status of a night that did not start: its Kafka source's cluster gave no answer within --kafka-connect-s.
EXIT_KAFKA_DOWN = 4
#: Exit status of a night that did not start: its lake's object store did not answer, or has no such bucket.
EXIT_LAKE_DOWN = 5


def cmd_run_night(args: argparse.Namespace) -> int:
    settings = _settings(args)
    stop = StopRequest()
    try:
        report = run(settings, stop=stop)
    except KeyboardInterrupt:  # a second SIGTERM / Ctrl-C: stopped at once (pipeline/shutdown.py)
        log.error("stopped at once; what was not committed is read again by the next run of the same command")
        return stop.exit_status if stop.signum else 130
    except PostgresUnavailable as err:
        log.error("%s; nothing past the last committed batch was committed: run the same command again", err)
        return EXIT_POSTGRES_DOWN
    except psycopg.OperationalError as err:
        # refused for good (wrong password, no such database: retry_postgres does not wait for those)
        log.error(
            "PostgreSQL refused the connection: %s; nothing past the last committed batch was committed",
            redact(str(err)),
        )
        return EXIT_POSTGRES_DOWN
    except KafkaUnavailable as err:
        log.error("%s; nothing was started: check --source and the cluster, then run the same command", err)
        return EXIT_KAFKA_DOWN
    except LakeUnavailable as err:
        log.error(
            "%s; nothing was started: check --lake-url and the S3 settings, then run the same command", err
        )
        return EXIT_LAKE_DOWN
    except ResumeRefused as err:
        log.error("%s; nothing was processed", err)
        return 2
    print(report.render())
    print(f"report written to {Path(settings.reports_dir).resolve()}")
    if report.status == "stopped":
        return stop.exit_status  # 128 + the signal: the source's end was not reached
    # nothing read is a failure (an empty or wrong source), unless a resume found the night already committed
    return 0 if report.status == "ok" and (report.alerts > 0 or report.resumed_skipped > 0) else 1


def cmd_warm(args: argparse.Namespace) -> int:
    """Compile the science's numba kernels into their on-disk cache (``make setup`` and the image build run it),
    so a worker that starts later, an autoscaled one in a burst above all, is ready in seconds."""
    seconds = warm_up_science()
    print(
        f"science warmed up in {seconds:.1f} s (numba cache: {os.environ.get('NUMBA_CACHE_DIR') or 'beside the code'})"
    )
    return 0


def cmd_integrity(args: argparse.Namespace) -> int:
    """Re-read the source, compare its alerts with the lake and PostgreSQL, and (--repair) reprocess the
    missing ones. Exit status 0 when nothing is missing (after the repair), 1 otherwise."""
    settings = _settings(args)
    with (
        integrity.with_database(settings) as settings,
        integrity.recorded_check(settings, args.repair) as check,
    ):
        report = check["report"] = integrity.scan(settings)
        print(report.render())
        result = check["result"] = integrity.repair(settings, report) if args.repair else None
    if result is not None:
        print()
        print(result.render())
    path = integrity.write_report(settings.reports_dir, report, result)
    print(f"report written to {path.resolve()}")
    final = result.after if result is not None else report
    return 0 if final.missing_total == 0 else 1


def cmd_runs(args: argparse.Namespace) -> int:
    """List the recorded runs (``pipeline_run``), newest first: nights, integrity checks, re-scorings."""
    settings = _settings(args)
    with EmbeddedPostgres(settings.pg_data_dir) if not settings.pg_dsn else _Null(settings.pg_dsn) as pg:
        store = SummaryStore(pg.dsn)
        try:
            store.ensure_schema()
            runs = store.fetch_df(
                "SELECT run_id, source, status, started_at, finished_at, counts FROM pipeline_run"
                " WHERE (%(source)s::text IS NULL OR source = %(source)s)"
                " ORDER BY started_at DESC NULLS LAST LIMIT %(limit)s",
                {"source": args.run_source, "limit": args.limit},
            )
        finally:
            store.close()
    if args.json:
        print(runs.to_json(orient="records", date_format="iso"))
        return 0
    if runs.empty:
        print("no recorded run" + (f" of source {args.run_source!r}" if args.run_source else ""))
        return 0
    print(f"{'run':<24} {'status':<9} {'started (UTC)':<20} {'seconds':>8}  source / counts")
    for r in runs.itertuples(index=False):
        took = (r.finished_at - r.started_at).total_seconds() if pd.notna(r.finished_at) else float("nan")
        counts = ", ".join(f"{k} {v}" for k, v in (r.counts or {}).items())
        started = pd.Timestamp(r.started_at).tz_convert("UTC").strftime("%Y-%m-%d %H:%M:%S")
        print(
            f"{r.run_id:<24} {r.status:<9} {started:<20} {took:>8.1f}  {r.source}"
            + (f": {counts}" if counts else "")
        )
    return 0


def cmd_dead_letters(args: argparse.Namespace) -> int:
    """What went to the dead letters: counts per source and error with an example reason, the latest ones, and
    (``--save``) a dead letter's raw bytes to a file (storage/dead_letters.py)."""
    try:
        wanted = [dead_letters.parse_coordinates(c) for c in args.save or []]
    except ValueError as err:
        print(f"dead-letters: {err}", file=sys.stderr)
        return 2
    settings = _settings(args)
    with ExitStack() as stack:
        pg = stack.enter_context(
            EmbeddedPostgres(settings.pg_data_dir) if not settings.pg_dsn else _Null(settings.pg_dsn)
        )
        store = stack.enter_context(SummaryStore(pg.dsn))
        store.ensure_schema()
        per_error = dead_letters.summary(store, args.letter_source, args.error)
        latest = dead_letters.latest(store, args.letter_source, args.error, args.limit) if args.list else None
    if wanted:
        found = dead_letters.payloads(Lake(settings.lake, settings.storage_options or None), wanted)
        dest = Path(args.dest or ".")
        dest.mkdir(parents=True, exist_ok=True)
        for source, partition, offset in wanted:
            payload = found.get((source, partition, offset))
            if payload is None:
                print(f"no dead letter at {source}:{partition}:{offset} in the lake", file=sys.stderr)
                return 1
            name = re.sub(r"[^\w.-]+", "_", source) + f"-p{partition}-o{offset}"
            path = dest / (name + (".avro" if payload.startswith(b"Obj\x01") else ".bin"))
            path.write_bytes(payload)
            print(f"wrote {path} ({len(payload)} bytes)")
        return 0
    if args.json:
        out = {"by_error": json.loads(per_error.to_json(orient="records"))}
        if latest is not None:
            out["latest"] = json.loads(latest.to_json(orient="records"))
        print(json.dumps(out, indent=2))
        return 0
    if per_error.empty:
        print("no dead letter" + (f" of source {args.letter_source!r}" if args.letter_source else ""))
        return 0
    print(f"{int(per_error['dead_letters'].sum())} dead letters")
    print(per_error.to_string(index=False, max_colwidth=100))
    if latest is not None:
        print("\nlatest:")
        print(latest.to_string(index=False, max_colwidth=100))
    return 0


def cmd_listen(args: argparse.Namespace) -> int:
    """Follow the annotated output stream (a topic, a filter's or watch list's, or a ``file://`` folder): one line
    per alert, or its whole record as a JSON line (``--jsonl``)."""
    try:
        where = compile_expression(args.where, "--where") if args.where else None
    except FilterError as err:
        print(f"listen: {err}", file=sys.stderr)
        return 2
    settings = _settings(args)
    options: dict = {"max_messages": args.max}
    if args.url.startswith("kafka://"):
        options.update(group=args.group, latest=args.latest, idle_stop_s=args.idle_stop_s)
        options["client_config"] = settings.kafka_config
    sink = None if args.jsonl is None else (sys.stdout if args.jsonl == "-" else open(args.jsonl, "a"))  # noqa: SIM115
    n = failed = 0
    try:
        for key, record in listen.iter_stream(args.url, **options):
            if where is not None:
                try:
                    if not where(record):
                        continue
                except Exception as err:  # a record the expression cannot judge: skipped, said once
                    failed += 1
                    if failed == 1:
                        print(
                            f"listen: --where failed on {key}: {type(err).__name__}: {err}", file=sys.stderr
                        )
                    continue
            n += 1
            if sink is None:
                print(listen.summary_line(key, record), flush=True)
            else:
                sink.write(json.dumps({"key": key, **record}, default=str) + "\n")
                sink.flush()
    except (ValueError, KafkaException) as err:
        print(f"listen: {redact(str(err))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        if sink is not None and sink is not sys.stdout:
            sink.close()
    print(
        f"{n} alerts" + (f" ({failed} records --where could not judge, skipped)" if failed else ""),
        file=sys.stderr,
    )
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    """Fetch a raw alert packet (and its stamps) back from the archive by candid."""
    settings = _settings(args)
    with EmbeddedPostgres(settings.pg_data_dir) if not settings.pg_dsn else _Null(settings.pg_dsn) as pg:
        store = SummaryStore(pg.dsn)
        store.ensure_schema()
        rows = store.fetch_df("SELECT raw_path, night FROM alert WHERE candid = %s", (args.candid,))
        night = int(rows["night"].iloc[0]) if not rows.empty else None
        expired = store.conn.execute(retention.EXPIRED_AT_SQL, (RAW_TABLE, night)).fetchone()
    if rows.empty:
        print(f"candid {args.candid} is not in the alert table", file=sys.stderr)
        return 1
    lake = Lake(settings.lake, settings.storage_options or None)
    if retention.packet_gone(lake, expired[0] if expired else None, rows["raw_path"].iloc[0]):
        print(retention.gone_message(args.candid, night, expired[0]), file=sys.stderr)
        return 1
    archive = RawArchive(lake)
    payload = archive.fetch(args.candid, night=int(rows["night"].iloc[0]), path=rows["raw_path"].iloc[0])
    out = Path(args.dest or ".")
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.candid}.avro").write_bytes(payload)
    for name, data in archive.fetch_stamps(args.candid, path=rows["raw_path"].iloc[0]).items():
        if data:
            (out / f"{args.candid}_{name}.fits.gz").write_bytes(data)
    print(f"wrote {out / f'{args.candid}.avro'} and its stamps")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the read-only query API and web explorer over PostgreSQL and the lake (docs/api.md)."""
    settings = _settings(args)
    with EmbeddedPostgres(settings.pg_data_dir) if not settings.pg_dsn else _Null(settings.pg_dsn) as pg:
        config = ServeConfig(
            dsn=pg.dsn,
            lake_url=settings.lake,
            storage_options=settings.storage_options,
            history_order=settings.history_order,
            host=args.host,
            port=args.port,
            log_level=settings.log_level,
            catalog_root=settings.catalogs,
        )
        print(f"serving the API and explorer on http://{args.host}:{args.port}/ (docs at /docs)", flush=True)
        serve(config)
    return 0


def cmd_lake(args: argparse.Namespace) -> int:
    """Write the lake's analysis-ready tables (current objects, magstats, latest probabilities, light curves),
    or compact its per-batch files (one file per table and night folder)."""
    settings = _settings(args)
    if args.action == "compact":
        return _lake_compact(args, settings)
    if args.action == "status":
        return _lake_status(args, settings)
    if args.action == "expire":
        return _lake_expire(args, settings)
    unknown = sorted(set(args.table or ()) - set(PUBLISHED_TABLES))
    if unknown:
        print(
            f"publish: unknown table(s) {', '.join(unknown)}; known: {', '.join(PUBLISHED_TABLES)}",
            file=sys.stderr,
        )
        return 2
    tables = tuple(args.table) if args.table else PUBLISHED_TABLES
    with EmbeddedPostgres(settings.pg_data_dir) if not settings.pg_dsn else _Null(settings.pg_dsn) as pg:
        report = publish(
            pg.dsn,
            settings.lake,
            settings.storage_options,
            history_order=settings.history_order,
            order=args.order,
            tables=tables,
        )
    print(report.render())
    return 0


def _lake_status(args: argparse.Namespace, settings) -> int:
    """``broker lake status``: files per per-batch table, and how many folders a compaction would fold."""
    unknown = sorted(set(args.table or ()) - set(NATURAL_KEYS))
    if unknown:
        print(f"status: unknown table(s) {', '.join(unknown)}", file=sys.stderr)
        return 2
    rows = compaction.status(Lake(settings.lake, settings.storage_options or None), args.table)
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print(f"no per-batch table at {settings.lake}")
    else:
        print(pd.DataFrame(rows).to_string(index=False))
    return 0


def _lake_compact(args: argparse.Namespace, settings) -> int:
    """``broker lake compact``: fold the committed batches' files, folder by folder (storage/compaction.py)."""
    unknown = sorted(set(args.table or ()) - set(NATURAL_KEYS))
    if unknown:
        print(
            f"compact: unknown table(s) {', '.join(unknown)}; known: {', '.join(sorted(NATURAL_KEYS))}",
            file=sys.stderr,
        )
        return 2
    lake = Lake(settings.lake, settings.storage_options or None)
    with ExitStack() as stack:
        pg = stack.enter_context(
            EmbeddedPostgres(settings.pg_data_dir) if not settings.pg_dsn else _Null(settings.pg_dsn)
        )
        # the merges on the cluster's workers when there is one (--scheduler), else two threads here
        mapper = dask_mapper(stack.enter_context(Client(settings.scheduler))) if settings.scheduler else None
        store = SummaryStore(pg.dsn)
        stack.callback(store.close)
        store.ensure_schema()
        config = {**settings.public_dict(), "tables": args.table, "nights": args.compact_night}
        report = compaction.recorded_compact(
            store,
            lake,
            config,
            tables=args.table,
            nights=args.compact_night,
            min_files=args.min_files,
            mapper=mapper,
        )
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.render())
    return 0


def _lake_expire(args: argparse.Namespace, settings) -> int:
    """``broker lake expire``: delete the raw archive's nights before a cutoff (storage/retention.py)."""
    if (args.keep_days is None) == (args.before is None):
        print(
            "expire: give --keep-days N (nights of the last N days kept) or --before YYYYMMDD",
            file=sys.stderr,
        )
        return 2
    try:
        before = args.before if args.before is not None else retention.cutoff(args.keep_days)
    except ValueError as err:
        print(f"expire: {err}", file=sys.stderr)
        return 2
    if not 19000101 <= before <= 29991231:
        print(f"expire: --before {before} is not a night (YYYYMMDD)", file=sys.stderr)
        return 2
    lake = Lake(settings.lake, settings.storage_options or None)
    with ExitStack() as stack:
        pg = stack.enter_context(
            EmbeddedPostgres(settings.pg_data_dir) if not settings.pg_dsn else _Null(settings.pg_dsn)
        )
        store = stack.enter_context(SummaryStore(pg.dsn))
        store.ensure_schema()
        if args.dry_run:
            report = retention.expire(store, lake, before, dry_run=True)
        else:
            config = {**settings.public_dict(), "before": before, "keep_days": args.keep_days}
            report = retention.recorded_expire(store, lake, before, config)
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.render())
    return 0


class _Null:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def cmd_reclassify(args: argparse.Namespace) -> int:
    """Re-score the stored objects with the light-curve models ``--lc-model`` names (pipeline/reclassify.py)."""
    settings = _settings(args)
    try:
        specs = lc_models(settings)
        stamps = stamp_models(settings) if args.stamps else ()
    except ValueError as err:  # a model the registry does not have
        log.error("%s", err)
        return 2
    if not specs and not stamps:
        log.error("--lc-model names no model and --stamps is not given: nothing to re-score")
        return 2
    with EmbeddedPostgres(settings.pg_data_dir) if not settings.pg_dsn else _Null(settings.pg_dsn) as pg:
        try:
            reports = reclassify_models(
                settings,
                pg.dsn,
                specs,
                oids=args.oid or None,
                dry_run=args.dry_run,
                from_history=args.from_history,
                stamps=stamps,
            )
        except NoStoredFeatures as err:
            log.error("%s", err)
            return 1
        except psycopg.OperationalError as err:  # the database went away: the chunks upserted so far stay
            log.error("PostgreSQL: %s; run the same command again", redact(str(err)).splitlines()[0])
            return EXIT_POSTGRES_DOWN
    for r in reports:
        print(r.render())
    folder = Path(settings.reports_dir)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    path, n = folder / f"reclassify-{stamp}.json", 1
    while path.exists():
        n += 1
        path = folder / f"reclassify-{stamp}-{n}.json"
    path.write_text(json.dumps([r.summary() for r in reports], indent=2))
    print(f"report written to {path.resolve()}")
    return 0 if any(r.objects for r in reports) else 1


def cmd_produce(args: argparse.Namespace) -> int:
    """Push a night archive to a Kafka topic (replaying a night, or a load test at a given rate)."""
    url = parse_kafka_url(args.to)
    config = load_settings().kafka_config  # the Kafka security settings, from BROKER_* / BROKER_CONFIG
    ensure_topic(url.bootstrap, url.topics[0], partitions=args.partitions, config=config)
    payloads = ((m.key, m.payload) for batch in iter_archive(Path(args.archive), 1000) for m in batch)
    n = produce(url.bootstrap, url.topics[0], payloads, rate=args.rate, config=config)
    print(f"produced {n} alerts to {args.to}")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    """Inspect or compact the light-curve history store (one process; run-night compacts on Dask itself)."""
    settings = _settings(args)
    store = HistoryStore(Lake(settings.lake, settings.storage_options or None), order=settings.history_order)
    if args.action == "compact":
        stats = store.compact()
        print(f"folded {stats['deltas']} delta files into {stats['pixels']} pixel files")
        return 0
    if args.action == "show":
        if not args.oid:
            print("history show needs --oid", file=sys.stderr)
            return 2
        if args.all_surveys:
            lc = store.multisurvey_light_curve(args.oid)
            if lc.empty:
                print(f"{args.oid} is not in the history at {settings.lake}", file=sys.stderr)
                return 1
            cols = ["xid", "survey", "oid", "band", "mjd", "magpsf", "sigmapsf", "flux", "flux_err"]
            print(lc[[c for c in cols if c in lc.columns]].to_string(index=False))
            return 0
        known = store.read("objects", store.pixels("objects"), [args.oid])
        if known.empty:
            print(f"{args.oid} is not in the history at {settings.lake}", file=sys.stderr)
            return 1
        pixel = int(known["pixel"].iloc[0])
        det = store.read("detections", [pixel], [args.oid]).sort_values("mjd")
        print(known.to_string(index=False))
        cols = [
            c
            for c in ("candid", "mjd", "night", "band", "magpsf", "sigmapsf", "flux", "has_stamp")
            if c in det.columns
        ]
        print(det[cols].to_string(index=False))
        return 0
    for table in HISTORY_KEYS:
        print(
            f"{table:<18} {len(store.pixels(table)):>6} pixels  {len(store.delta_files(table)):>5} delta files"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="broker", description="An alert broker for ZTF and LSST on Dask.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run-night", help="process one night (an archive, or a Kafka topic until idle)")
    _add_settings_flags(p)
    p.set_defaults(func=cmd_run_night)

    p = sub.add_parser(
        "integrity",
        help="re-scan a source (a topic from its earliest offset, or an archive) against the lake and PostgreSQL",
    )
    _add_settings_flags(p)  # --source, --night, --out, --pg-dsn, --lake-url, ...
    p.add_argument(
        "--repair",
        action="store_true",
        help="reprocess the missing alerts (whole batches, same sinks and idempotence), then re-scan",
    )
    p.set_defaults(func=cmd_integrity)

    p = sub.add_parser(
        "warm", help="compile the numba kernels into their cache (workers then start in seconds)"
    )
    p.set_defaults(func=cmd_warm)

    p = sub.add_parser(
        "runs", help="list the recorded runs (nights, integrity checks, re-scorings), newest first"
    )
    _add_settings_flags(p)
    p.add_argument(
        "--run-source",
        default=None,
        help="only runs of this source (integrity, reclassify, lake-compaction, archive:...)",
    )
    p.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    p.add_argument("--json", action="store_true", help="JSON records instead of a table")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser(
        "dead-letters",
        help="what went to the dead letters: counts per source and error with a reason, the latest, their bytes",
    )
    _add_settings_flags(p)
    p.add_argument(
        "--letter-source", default=None, help="only dead letters of this source (archive:..., a topic)"
    )
    p.add_argument("--error", default=None, help="only this error (e.g. SchemaError, CorruptAvroError)")
    p.add_argument("--list", action="store_true", help="also list the latest dead letters, one a line")
    p.add_argument("--limit", type=int, default=20, help="how many --list shows (default 20)")
    p.add_argument(
        "--save",
        action="append",
        metavar="SOURCE:PARTITION:OFFSET",
        help="write this dead letter's raw bytes to --dest (repeatable)",
    )
    p.add_argument("--dest", default=None, help="folder for --save (default: here)")
    p.add_argument("--json", action="store_true", help="JSON instead of tables")
    p.set_defaults(func=cmd_dead_letters)

    p = sub.add_parser(
        "listen",
        help="follow the annotated output stream (a Kafka topic or a file:// folder): a line per alert",
    )
    _add_settings_flags(p)  # the Kafka security settings (SASL, SSL) come from there
    p.add_argument(
        "url", help="kafka://host:port/topic[,topic] (e.g. alerts.filter.young_sn) or file://DIR/alerts"
    )
    p.add_argument(
        "--group", default=None, help="consumer group: commit what was read, go on from there next time"
    )
    p.add_argument(
        "--latest", action="store_true", help="only what is published from now (default: from the start)"
    )
    p.add_argument(
        "--idle-stop-s", type=float, default=10.0, help="stop after this long without a message (0: never)"
    )
    p.add_argument("--max", type=int, default=None, help="stop after this many alerts read")
    p.add_argument(
        "--where",
        default=None,
        metavar="EXPR",
        help="only the alerts this filter expression accepts (docs/filters.md), e.g. 'stamp.SN > 0.6 and magpsf < 19'",
    )
    p.add_argument(
        "--jsonl", default=None, metavar="FILE", help="append each whole record as a JSON line ('-': stdout)"
    )
    p.set_defaults(func=cmd_listen)

    p = sub.add_parser("fetch", help="fetch a raw alert and its stamps back by candid")
    _add_settings_flags(p)
    p.add_argument("candid", type=int)
    p.add_argument("--dest", help="folder to write into (default: current)")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("produce", help="produce a night archive to a Kafka topic")
    p.add_argument("archive", help="folder or .tar.gz of .avro files")
    p.add_argument("--to", required=True, help="kafka://host:port/topic")
    p.add_argument("--partitions", type=int, default=1)
    p.add_argument(
        "--rate", type=float, default=None, help="alerts per second (default: as fast as possible)"
    )
    p.set_defaults(func=cmd_produce)

    register_simulator(sub)

    p = sub.add_parser("history", help="the light-curve history store: status, compact, show an object")
    _add_settings_flags(p)
    p.add_argument("action", choices=["status", "compact", "show"])
    p.add_argument("--oid", help="history show: the object")
    p.add_argument(
        "--all-surveys", action="store_true", help="history show: the combined light curve of every survey"
    )
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("serve", help="serve the read-only query API and web explorer (docs/api.md)")
    _add_settings_flags(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "lake",
        help="the lake: publish its analysis-ready tables, compact its files, status, expire the raw archive's "
        "old nights (docs/lake-tables.md)",
    )
    _add_settings_flags(p)
    p.add_argument("action", choices=["publish", "compact", "status", "expire"])
    p.add_argument(
        "--table",
        action="append",
        help=f"only this table (repeatable); publish: {', '.join(PUBLISHED_TABLES)}; compact: a per-batch table",
    )
    p.add_argument(
        "--compact-night",
        type=int,
        action="append",
        metavar="YYYYMMDD",
        help="compact: only this night's folders (repeatable; the night or alert_night of the folder)",
    )
    p.add_argument(
        "--min-files", type=int, default=2, help="compact: folders with at least this many files (default 2)"
    )
    p.add_argument(
        "--keep-days",
        type=int,
        default=None,
        metavar="N",
        help="expire: keep the raw archive's nights of the last N days (UTC, today included), delete the older",
    )
    p.add_argument(
        "--before",
        type=int,
        default=None,
        metavar="YYYYMMDD",
        help="expire: delete the raw nights before this one",
    )
    p.add_argument("--dry-run", action="store_true", help="expire: say what would go, delete nothing")
    p.add_argument("--json", action="store_true", help="compact, status, expire: print JSON")
    p.add_argument(
        "--order", type=int, default=None, help="HEALPix order of the HATS tables (default: by size)"
    )
    p.set_defaults(func=cmd_lake)

    p = sub.add_parser(
        "reclassify",
        help="re-score the objects in the database with a light-curve model (from their stored features, or "
        "features computed from the history store)",
    )
    _add_settings_flags(p)  # --lc-model (name[:version], auto), --out, --pg-dsn, --models, --no-publish-lake
    p.add_argument("--oid", action="append", help="only this object (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="score and report what would change, write nothing")
    p.add_argument(
        "--from-history",
        action="store_true",
        help="compute the features from the history store's light curves even where the database holds them",
    )
    p.add_argument(
        "--stamps",
        action="store_true",
        help="also re-score the stamp classifiers (--stamp-model; auto: one per survey) on each object's first "
        "alert, read back from the raw archive",
    )
    p.set_defaults(func=cmd_reclassify)

    register_training(sub)

    catalog_cli.register(sub)
    watchlist_cli.register(sub)
    sub.choices["catalog"].set_defaults(func=catalog_cli.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
