"""PostgreSQL summaries on a real server (embedded, as root here): schema, idempotent bulk upserts, the
never-regress rule, run bookkeeping, and the embedded server's lifecycle."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import psutil
import psycopg
import pytest

from alert_broker.storage.embedded import EmbeddedPostgres
from alert_broker.storage.postgres import TABLES, SummaryStore

pytestmark = pytest.mark.integration

BIG = 2**60 + 777


def objects(n: int, lastmjd: float = 59000.0, ndet: int = 3, prefix: str = "ZTF20aa") -> pd.DataFrame:
    i = np.arange(n)
    return pd.DataFrame(
        {
            "oid": [f"{prefix}{k:07d}" for k in i],
            "survey": "ztf",
            "ndet": np.full(n, ndet, dtype="int32"),
            "firstmjd": np.full(n, 58900.0),
            "lastmjd": np.full(n, lastmjd),
            "deltajd": np.full(n, lastmjd - 58900.0),
            "meanra": (i * 0.37) % 360.0,
            "meandec": ((i * 0.11) % 180.0) - 90.0,
            "sigmara": np.full(n, 0.1),
            "sigmadec": np.full(n, 0.12),
            "corrected": i % 2 == 0,
            "stellar": i % 3 == 0,
            "diffpos": np.ones(n, dtype=bool),
            "reference_change": np.zeros(n, dtype=bool),
            "g_r_max": np.where(i % 4 == 0, np.nan, 0.3),
            "g_r_max_corr": np.nan,
            "g_r_mean": 0.25,
            "g_r_mean_corr": np.nan,
            "night": np.full(n, 20200601, dtype="int32"),
        }
    )


def test_embedded_server_runs_as_root_and_is_reused(tmp_path):
    data = tmp_path / "pg"
    with EmbeddedPostgres(data) as a:
        assert (data / "PG_VERSION").exists()
        with psycopg.connect(a.dsn) as conn:
            user = conn.execute("SELECT current_user").fetchone()[0]
            assert user == "postgres"
            # the server process itself does not run as root
            pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            assert psutil.Process(pid).username() != "root"
        b = EmbeddedPostgres(data)  # a second handle reuses the running server
        assert b.dsn == a.dsn
        b.stop()
        with psycopg.connect(a.dsn) as conn:  # still up: a holds it
            assert conn.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(a.dsn, connect_timeout=2)
    shutil.rmtree(data)


def test_importing_the_server_does_not_warn_without_xdg_runtime_dir():
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    code = "from storage.embedded import _server_class; _server_class()"
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "RuntimeDirWarning" not in proc.stderr


def test_ensure_schema_is_idempotent(summary_store: SummaryStore):
    summary_store.ensure_schema()  # second time: no error
    summary_store.ensure_schema()
    for table in TABLES:
        assert summary_store.count(table) == 0
    cols = summary_store.table_columns("object")
    assert cols["oid"] == "TEXT" and cols["ndet"] == "INTEGER" and cols["lastmjd"] == "DOUBLE PRECISION"
    assert cols["corrected"] == "BOOLEAN" and cols["night"] == "INTEGER"
    assert summary_store.table_columns("alert")["candid"] == "BIGINT"
    assert set(summary_store.table_columns("magstats")) >= {"magmean_corr", "dmdt_first", "saturation_rate"}


def test_upsert_twice_gives_same_rows(summary_store: SummaryStore):
    df = objects(500)
    assert summary_store.upsert("object", df) == 500
    first = summary_store.fetch_df("SELECT * FROM object ORDER BY oid")
    summary_store.upsert("object", df)
    assert summary_store.count("object") == 500
    again = summary_store.fetch_df("SELECT * FROM object ORDER BY oid")
    pd.testing.assert_frame_equal(first, again)
    # values made the trip exactly: floats, NaN -> NULL, bools, ints
    row = first.iloc[4]
    assert row["oid"] == "ZTF20aa0000004" and row["ndet"] == 3 and row["corrected"] is np.True_
    np.testing.assert_array_equal(first["meanra"].to_numpy(), df["meanra"].to_numpy())
    assert first["g_r_max"].isna().sum() == 125 and first["g_r_max_corr"].isna().all()


def test_older_rows_never_overwrite_newer(summary_store: SummaryStore):
    summary_store.upsert("object", objects(10, lastmjd=59010.0, ndet=5))
    summary_store.upsert("object", objects(10, lastmjd=59000.0, ndet=2))  # a replayed, older batch
    got = summary_store.fetch_df("SELECT ndet, lastmjd FROM object")
    assert (got["ndet"] == 5).all() and (got["lastmjd"] == 59010.0).all()
    summary_store.upsert("object", objects(10, lastmjd=59010.0, ndet=6))  # same age: accepted
    assert (summary_store.fetch_df("SELECT ndet FROM object")["ndet"] == 6).all()
    summary_store.upsert("object", objects(10, lastmjd=59020.0, ndet=7))
    got = summary_store.fetch_df("SELECT ndet, lastmjd FROM object")
    assert (got["ndet"] == 7).all() and (got["lastmjd"] == 59020.0).all()

    # magstats, keyed by (oid, fid); within one frame the newest row per key wins
    ms = pd.DataFrame(
        {
            "oid": ["A", "A", "A", "B"],
            "fid": np.array([1, 2, 1, 1], dtype="int16"),
            "ndet": [4, 2, 9, 1],
            "magmean": [18.0, 19.0, 17.5, 20.0],
            "lastmjd": [59005.0, 59001.0, 59003.0, 59000.0],
        }
    )
    assert summary_store.upsert("magstats", ms) == 3
    got = summary_store.fetch_df("SELECT oid, fid, ndet FROM magstats ORDER BY oid, fid")
    assert got.values.tolist() == [["A", 1, 4], ["A", 2, 2], ["B", 1, 1]]
    older = ms.iloc[[0]].assign(ndet=1, lastmjd=59004.0)
    summary_store.upsert("magstats", older)
    assert summary_store.fetch_df("SELECT ndet FROM magstats WHERE oid='A' AND fid=1").iloc[0, 0] == 4


def test_alert_rows_keep_64bit_ids_and_ignore_unknown_columns(summary_store: SummaryStore):
    alerts = pd.DataFrame(
        {
            "candid": np.array([BIG, BIG + 1], dtype=np.int64),
            "oid": ["ZTF1", "ZTF2"],
            "survey": "ztf",  # candids are unique within a survey: the key is (survey, candid)
            "mjd": [59000.1, 59000.2],
            "night": np.array([20200531, 20200531], dtype="int32"),
            "fid": np.array([1, 2], dtype="int16"),
            "ra": [10.0, 11.0],
            "dec": [-5.0, 5.0],
            "magpsf": [18.5, np.nan],
            "raw_path": ["/lake/raw/night=20200531/b1.parquet", None],
            "batch_id": "b1",
            "not_a_column": ["x", "y"],  # the frame may carry more: ignored
            "objectidps1": pd.array([BIG + 5, pd.NA], dtype="Int64"),
        }
    )
    assert summary_store.upsert("alert", alerts) == 2
    got = summary_store.fetch_df("SELECT candid, magpsf, raw_path FROM alert ORDER BY candid")
    assert got["candid"].dtype == np.int64 and got["candid"].tolist() == [BIG, BIG + 1]
    assert pd.isna(got["magpsf"].iloc[1]) and got["magpsf"].iloc[0] == 18.5
    assert pd.isna(got["raw_path"].iloc[1])  # NULL came back as missing, not the string "None"
    # the alert table has no version: a re-upsert updates (e.g. a replay's new raw path)
    summary_store.upsert("alert", alerts.assign(raw_path="/lake/raw/night=20200531/b2.parquet"))
    paths = summary_store.fetch_df("SELECT raw_path FROM alert")["raw_path"]
    assert set(paths) == {"/lake/raw/night=20200531/b2.parquet"}

    with pytest.raises(ValueError, match="key columns"):
        summary_store.upsert("alert", alerts.drop(columns=["candid"]))
    with pytest.raises(KeyError, match="unknown summary table"):
        summary_store.upsert("nope", alerts)
    assert summary_store.upsert("alert", alerts.iloc[0:0]) == 0


def test_dead_letters_and_runs(summary_store: SummaryStore):
    dl = pd.DataFrame(
        {
            "source": ["archive:n1", "archive:n1"],
            "partition": np.array([0, 0], dtype="int32"),
            "offset": np.array([7, 8], dtype="int64"),
            "reason": ["the file is not Avro", 'quote " and, comma\nnewline'],
            "error": ["ValueError", "KeyError"],
            "batch_id": "b1",
        }
    )
    summary_store.upsert("dead_letter", dl)
    summary_store.upsert("dead_letter", dl)
    got = summary_store.fetch_df('SELECT "offset", reason FROM dead_letter ORDER BY "offset"')
    assert got["reason"].tolist() == dl["reason"].tolist()  # CSV quoting survives

    run = summary_store.start_run("run-1", "archive:n1", {"batch_size": 500, "lake": "/x"})
    summary_store.finish_run(run, "ok", {"alerts": 1166, "wall_s": 12.5}, counts={"alerts": 1166})
    row = summary_store.fetch_df("SELECT * FROM pipeline_run").iloc[0]
    assert row["status"] == "ok" and row["config"]["batch_size"] == 500
    assert row["summary"]["alerts"] == 1166 and row["counts"] == {"alerts": 1166}
    assert row["finished_at"] >= row["started_at"]
    with pytest.raises(KeyError):
        summary_store.finish_run("never-started", "ok")


def test_upsert_throughput_10k_objects(summary_store: SummaryStore):
    """Bulk COPY + one INSERT ... ON CONFLICT: 10k object rows must take well under a second or two."""
    df = objects(10_000)
    summary_store.upsert("object", df.iloc[:10])  # warm the connection and catalog cache
    t = time.perf_counter()
    summary_store.upsert("object", df)
    insert_s = time.perf_counter() - t
    t = time.perf_counter()
    summary_store.upsert("object", df.assign(ndet=4))  # all conflicts: the update path
    update_s = time.perf_counter() - t
    assert summary_store.count("object") == 10_000
    assert (summary_store.fetch_df("SELECT DISTINCT ndet FROM object")["ndet"] == 4).all()
    print(
        f"\nupsert 10k objects: insert {10_000 / insert_s:,.0f} rows/s, update {10_000 / update_s:,.0f} rows/s"
    )
    assert 10_000 / insert_s > 5_000 and 10_000 / update_s > 5_000


def test_an_exclusive_lock_has_one_holder_at_a_time(summary_store):
    from alert_broker.storage.postgres import SummaryStore

    other = SummaryStore(summary_store.dsn)  # another driver: its own connections
    with summary_store.exclusive("history-compaction") as mine:
        assert mine
        with other.exclusive("history-compaction") as theirs, other.exclusive("something-else") as unrelated:
            assert not theirs and unrelated
    with other.exclusive("history-compaction") as theirs:  # released on exit
        assert theirs
    other.close()


def test_copy_keeps_every_value_exactly(summary_store: SummaryStore):
    """The COPY text (Arrow's CSV writer) against values CSV gets wrong easily: shortest-form doubles read back
    bit for bit, infinities, NaN as NULL, NULL vs the empty string vs the text \\N (pandas' writer turned that
    one into NULL), quotes/commas/newlines, 64-bit ids beyond float64, nullable integers, timestamps, mixed
    objects."""
    rng = np.random.default_rng(5)
    n = 200
    mjd = 59000.0 + rng.random(n) * 10.0 ** rng.integers(-12, 3, n)  # awkward binary fractions
    mag = rng.standard_normal(n) * 10.0 ** rng.integers(-300, 300, n).astype(float)
    mag[:4] = [np.inf, -np.inf, np.nan, 0.1 + 0.2]
    text = ["", None, 'quote " and, comma\nnewline', "\\N", "plain"] * (n // 5)
    alerts = pd.DataFrame(
        {
            "candid": BIG + np.arange(n, dtype=np.int64),
            "oid": [f"ZTF{i}" for i in range(n)],
            "survey": "ztf",
            "mjd": mjd,
            "night": pd.array([20200531, pd.NA] * (n // 2), dtype="Int64"),
            "fid": np.ones(n, dtype="int16"),
            "ra": rng.random(n) * 360.0,
            "dec": rng.random(n) * 180.0 - 90.0,
            "magpsf": mag,
            "raw_path": text,
            "batch_id": "b1",
            "produced_at": pd.to_datetime(1.7e9 + np.arange(n) * 0.5, unit="s", utc=True),
        }
    )

    def stored() -> pd.DataFrame:
        got = summary_store.fetch_df(
            "SELECT candid, mjd, magpsf, raw_path, night, produced_at FROM alert ORDER BY candid"
        )
        return got.reset_index(drop=True)

    assert summary_store.upsert("alert", alerts) == n
    got = stored()
    assert got["candid"].tolist() == alerts["candid"].tolist()
    assert np.array_equal(got["mjd"].to_numpy(float), mjd)  # bit for bit
    assert np.array_equal(got["magpsf"].to_numpy(float)[3:], mag[3:], equal_nan=True)
    assert (
        got["magpsf"].iloc[0] == np.inf
        and got["magpsf"].iloc[1] == -np.inf
        and pd.isna(got["magpsf"].iloc[2])
    )
    assert [None if pd.isna(v) else v for v in got["raw_path"]] == text  # NULL and "" stay apart
    assert [None if pd.isna(v) else int(v) for v in got["night"]] == [20200531, None] * (n // 2)
    epoch = pd.Timestamp(0, tz="UTC")
    seconds = (pd.to_datetime(got["produced_at"], utc=True) - epoch).dt.total_seconds().to_numpy()
    assert np.allclose(seconds, 1.7e9 + np.arange(n) * 0.5, rtol=0, atol=1e-6)

    # a column Arrow cannot write as values (mixed Python objects) goes as each value's text
    mixed = alerts.iloc[:5].assign(raw_path=[1, "a", None, 2.5, b"z"], candid=BIG + np.arange(1000, 1005))
    assert summary_store.upsert("alert", mixed) == 5
    back = summary_store.fetch_df(f"SELECT raw_path FROM alert WHERE candid >= {BIG + 1000} ORDER BY candid")
    assert [None if pd.isna(v) else v for v in back["raw_path"]] == ["1", "a", None, "2.5", "b'z'"]
