"""Credentials never leak (docs/guarantees.md, "Credentials"): a real small night with a PostgreSQL role that
logs in with a password, an S3 lake (moto) with secret-looking keys and Kafka SASL settings, every secret given
the way production gives them (a file, as a mounted Kubernetes Secret, or the environment). Then every output
of the run is searched for the secrets: stdout and stderr (the workers' too), the JSON log lines, pytest's log
capture, every file under OUT (reports, output stream), the ``pipeline_run`` and ``dead_letter`` rows, the run
summary, and the exception a wrong password raises.

tansu (the test Kafka broker) has no authentication: the run's consumer gets ``security.protocol=PLAINTEXT``
with the SASL mechanism, user and password, which librdkafka accepts and does not use there; that the settings
reach every Kafka client is asserted on the clients' configurations in tests/unit/test_secret_settings.py.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from alert_broker.pipeline.config import load_settings
from alert_broker.pipeline.driver import run
from alert_broker.pipeline.kafka import ensure_topic, produce
from alert_broker.pipeline.logs import ROOT, configure_logging

pytestmark = pytest.mark.e2e

PG_PASSWORD = "pg-Secret-7c1e9a42d0b6"
WRONG_PASSWORD = "pg-Wrong-55e1c0ffee17"
S3_KEY = "AKIAFAKEKEY4SECRETS7Q"
S3_SECRET = "s3-Secret-Key+q8Zq1w2e3r4t5y6u7i"
SASL_PASSWORD = "sasl-Secret-Pa55-91abd0"
SECRETS = (PG_PASSWORD, WRONG_PASSWORD, S3_KEY, S3_SECRET, SASL_PASSWORD)


def _dsn(server: dict, role: str, password: str, db: str) -> str:
    """A URL DSN for ``role`` with ``password`` on the server of ``server`` (a unix socket or host:port)."""
    host, port = server.get("host", ""), server.get("port")
    auth = f"{role}:{quote(password, safe='')}"
    if not host or host.startswith("/"):
        query = f"?host={quote(host, safe='')}" + (f"&port={port}" if port else "") if host else ""
        return f"postgresql://{auth}@/{db}{query}"
    return f"postgresql://{auth}@{host}{':' + str(port) if port else ''}/{db}"


@contextlib.contextmanager
def password_role(server_dsn: str) -> Iterator[tuple[str, str, bool]]:
    """A fresh role that logs in with ``PG_PASSWORD`` and owns a fresh database: (its DSN, the same DSN with a
    wrong password, whether the server checks passwords). The session's embedded server trusts local logins,
    so a line asking this role for its password (scram-sha-256) is put at the top of its pg_hba.conf."""
    role, db = f"secret_{uuid.uuid4().hex[:8]}", f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(PG_PASSWORD))
        )
        admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db), sql.Identifier(role)))
        hba = Path(admin.execute("SHOW hba_file").fetchone()[0])
        original = hba.read_text() if hba.is_file() and os.access(hba, os.W_OK) else None
        if original is not None:
            hba.write_text(
                f"local all {role} scram-sha-256\nhost all {role} 127.0.0.1/32 scram-sha-256\n"
                f"host all {role} ::1/128 scram-sha-256\n" + original
            )
            admin.execute("SELECT pg_reload_conf()")
    server = conninfo_to_dict(server_dsn)
    good, wrong = _dsn(server, role, PG_PASSWORD, db), _dsn(server, role, WRONG_PASSWORD, db)
    try:
        psycopg.connect(wrong).close()
        enforced = False
    except psycopg.OperationalError:
        enforced = True
    try:
        yield good, wrong, enforced
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as admin:
            if original is not None:
                hba.write_text(original)
                admin.execute("SELECT pg_reload_conf()")
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@contextlib.contextmanager
def json_logs(path: Path) -> Iterator[None]:
    """The package's log lines as JSON into ``path`` (what ``--log-format json`` gives a cluster's collector)."""
    logger = logging.getLogger(ROOT)
    saved = (list(logger.handlers), logger.level, logger.propagate)
    with open(path, "w") as fh:
        try:
            configure_logging("INFO", "json", stream=fh)
            yield
        finally:
            logger.handlers[:] = saved[0]
            logger.setLevel(saved[1])
            logger.propagate = saved[2]


def _leaks(where: str, text: str) -> list[str]:
    return [f"{where}: {s}" for s in SECRETS if s in text or quote(s, safe="") in text]


def _files_text(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): p.read_bytes().decode("latin-1") for p in root.rglob("*") if p.is_file()
    }


def _rows(dsn: str, query: str) -> str:
    with psycopg.connect(dsn) as conn:
        return "\n".join(str(r[0]) for r in conn.execute(query).fetchall())


@pytest.mark.timeout(600)
def test_no_secret_reaches_any_output(
    tmp_path, shared_data, postgres_dsn, s3_lake_url, kafka_bootstrap, capfd, caplog
):
    caplog.set_level(logging.INFO)
    lake_url, s3 = s3_lake_url
    topic = f"secret-{uuid.uuid4().hex[:8]}"
    files = sorted((shared_data / "ztf" / "fink_sample_1166").glob("*.avro"))[:40]
    html = shared_data / "ztf" / "object_sequences" / "ZTF17aaaedmd" / "1217406343915015013.avro"
    ensure_topic(kafka_bootstrap, topic)
    produce(kafka_bootstrap, topic, [(f.name, f.read_bytes()) for f in [*files, html]])
    out = tmp_path / "out"
    secrets_dir = tmp_path / "secrets"  # as a Kubernetes Secret mounted as files
    secrets_dir.mkdir()

    with password_role(postgres_dsn) as (dsn, wrong_dsn, enforced):
        (secrets_dir / "pg-dsn").write_text(dsn + "\n")
        (secrets_dir / "s3-secret").write_text(S3_SECRET + "\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
        env.update(
            BROKER_PG_DSN_FILE=str(secrets_dir / "pg-dsn"),
            BROKER_S3_KEY=S3_KEY,
            BROKER_S3_SECRET_FILE=str(secrets_dir / "s3-secret"),
            BROKER_KAFKA_SASL_PASSWORD=SASL_PASSWORD,
        )
        overrides = dict(
            source=f"kafka://{kafka_bootstrap}/{topic}",
            output=f"file://{out / 'stream'}",
            out=str(out),
            lake_url=lake_url,
            s3_endpoint_url=s3["endpoint_url"],
            kafka_group=f"g-{uuid.uuid4().hex[:8]}",
            kafka_security_protocol="PLAINTEXT",  # tansu has no SASL: the options reach the client, unused
            kafka_sasl_mechanism="PLAIN",
            kafka_sasl_username="alert-broker",
            n_workers=2,
            threads_per_worker=1,
            batch_size=20,
            batch_timeout_s=2,
            kafka_idle_stop_s=5,
            dashboard_address=":0",
            progress=False,
            lc_model="none",
            stamp_model="none",
            log_format="json",
        )
        settings = load_settings(env=env, overrides=overrides)
        assert settings.pg_dsn == dsn and settings.s3_secret == S3_SECRET
        assert settings.kafka_config["sasl.password"] == SASL_PASSWORD

        with json_logs(tmp_path / "broker.log"):
            report = run(settings)
        assert report.status == "ok" and report.alerts == len(files) and report.dead_letters == 1

        texts = {
            "json logs": (tmp_path / "broker.log").read_text(),
            "pytest log capture": caplog.text,
            "run summary": json.dumps(report.summary(), default=str),
            "rendered report": report.render(),
            "pipeline_run": _rows(dsn, "SELECT row_to_json(r)::text FROM pipeline_run r"),
            "dead_letter": _rows(dsn, "SELECT reason || ' ' || coalesce(key, '') FROM dead_letter"),
            "settings repr": repr(settings),
            "public settings": json.dumps(settings.public_dict()),
        }
        assert "broker:" not in texts["pipeline_run"] or "***" in texts["pipeline_run"]
        assert json.loads(texts["pipeline_run"].splitlines()[0])["config"]["s3_secret"] == "***"
        assert texts["json logs"].strip() and all(
            json.loads(line) for line in texts["json logs"].splitlines()
        )
        texts.update({f"file OUT/{k}": v for k, v in _files_text(out).items()})
        assert any(k.startswith("file OUT/reports/") for k in texts) and any("stream" in k for k in texts)

        # the wrong password: the exception and everything printed while it happened
        if enforced:
            wrong = load_settings(
                env={**env, "BROKER_PG_DSN_FILE": ""}, overrides={**overrides, "pg_dsn": wrong_dsn}
            )
            with pytest.raises(psycopg.OperationalError) as err:
                run(wrong)
            assert "password authentication failed" in str(err.value)
            texts["wrong-password exception"] = "".join(traceback.format_exception(err.value))
        captured = capfd.readouterr()
        texts["stdout"], texts["stderr"] = captured.out, captured.err

    leaks = [leak for where, text in texts.items() for leak in _leaks(where, text)]
    assert not leaks, leaks
    if not enforced:
        pytest.skip(
            "this PostgreSQL server does not check passwords (BROKER_TEST_PG_DSN): no wrong-password case"
        )


def test_the_kubernetes_secret_files_layout_works(tmp_path):
    """The k8s example mounts the Secret's keys as files named after the settings: each ``*_FILE`` variable
    points at one, and the values come back without their trailing newline."""
    mount = tmp_path / "var-run-secrets-broker"
    mount.mkdir()
    (mount / "BROKER_PG_DSN").write_text(f"postgresql://broker:{PG_PASSWORD}@postgres:5432/broker\n")
    (mount / "BROKER_KAFKA_SASL_PASSWORD").write_text(SASL_PASSWORD + "\n")
    env = {
        "BROKER_PG_DSN_FILE": str(mount / "BROKER_PG_DSN"),
        "BROKER_KAFKA_SASL_PASSWORD_FILE": str(mount / "BROKER_KAFKA_SASL_PASSWORD"),
    }
    s = load_settings(env=env)
    assert s.pg_dsn.endswith("@postgres:5432/broker") and s.kafka_sasl_password == SASL_PASSWORD
    assert PG_PASSWORD not in json.dumps(s.public_dict()) and SASL_PASSWORD not in json.dumps(s.public_dict())
    shutil.rmtree(mount)
