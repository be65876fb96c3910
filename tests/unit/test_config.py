"""Settings layering: defaults < TOML file < environment < CLI overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from alert_broker.pipeline.config import Settings, load_settings


def test_defaults():
    s = load_settings(env={})
    assert s.batch_size == Settings().batch_size
    assert s.lake == str(Path("data") / "lake")
    assert s.pg_data_dir == Path("data") / "pg"


def test_layers_in_order(tmp_path):
    cfg = tmp_path / "broker.toml"
    cfg.write_text('[broker]\nbatch_size = 100\nkafka_group = "from-file"\nout = "/tmp/x"\n')
    env = {"BROKER_BATCH_SIZE": "200", "BROKER_PROGRESS": "false"}
    s = load_settings(cfg, env=env, overrides={"batch_size": "300", "n_workers": None})
    assert s.batch_size == 300  # CLI beats env beats file
    assert s.kafka_group == "from-file"  # file beats default
    assert s.progress is False  # env beats default
    assert s.out == Path("/tmp/x")
    assert s.n_workers == Settings().n_workers  # None override = not given


def test_env_only_and_lake_url():
    s = load_settings(env={"BROKER_LAKE_URL": "s3://bucket/lake", "BROKER_S3_ENDPOINT_URL": "http://h:1"})
    assert s.lake == "s3://bucket/lake"
    assert s.storage_options == {"endpoint_url": "http://h:1"}


def test_bad_values_are_clear(tmp_path):
    with pytest.raises(ValueError, match="batch_size"):
        load_settings(env={"BROKER_BATCH_SIZE": "many"})
    with pytest.raises(ValueError, match="batch_size must be"):
        load_settings(env={}, overrides={"batch_size": 0})
    with pytest.raises(ValueError, match="worker_start must be one of forkserver, spawn, not 'fork'"):
        load_settings(env={"BROKER_WORKER_START": "fork"})
    assert load_settings(env={"BROKER_WORKER_START": "spawn"}).worker_start == "spawn"
    with pytest.raises(ValueError, match="kafka_connect_s must be > 0"):
        load_settings(env={"BROKER_KAFKA_CONNECT_S": "0"})
    assert load_settings(env={"BROKER_KAFKA_CONNECT_S": "5"}).kafka_connect_s == 5.0
    cfg = tmp_path / "c.toml"
    cfg.write_text("nonsense = 1\n")
    with pytest.raises(ValueError, match="unknown setting 'nonsense'"):
        load_settings(cfg, env={})


def test_secrets_masked():
    s = load_settings(env={}, overrides={"pg_dsn": "postgresql://u:pw@h/db", "s3_secret": "abc"})
    d = s.public_dict()
    assert "pw" not in d["pg_dsn"] and d["s3_secret"] == "***"


def test_xmatch_spec_parsing():
    from alert_broker.pipeline.config import parse_xmatch

    assert parse_xmatch("vsx:1.5:Type,Period; gcvs:2") == (
        ("vsx", 1.5, ("Type", "Period")),
        ("gcvs", 2.0, ()),
    )
    assert parse_xmatch("") == ()
    for bad in ("vsx", "vsx:far", "vsx:-1", ":2"):
        with pytest.raises(ValueError, match="xmatch entry"):
            parse_xmatch(bad)
    s = load_settings(env={"BROKER_XMATCH": "vsx:1"}, overrides={"out": "/o"})
    assert s.xmatch_specs == (("vsx", 1.0, ()),) and s.catalogs == "/o/catalogs"
