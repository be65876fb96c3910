"""Credentials in the settings (docs/guarantees.md, "Credentials"): from the environment or a file, masked in
everything the broker shows, and the Kafka security settings handed to every Kafka client it creates."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest

import alert_broker.pipeline.integrity as integrity
import alert_broker.pipeline.kafka as kafka
import alert_broker.pipeline.output as output
from alert_broker.pipeline import cli
from alert_broker.pipeline.config import SECRET_FIELDS, Settings, load_settings, redact
from alert_broker.pipeline.sources import KafkaBatches
from alert_broker.storage.secrets import Secret, password_of

PG_PASSWORD = "pg-Pa55-3f9d0c1e-secret"
S3_KEY = "AKIAFAKEKEY0SECRET7Q"
S3_SECRET = "s3/Secret+Key=Zm9vYmFyYmF6cXV4"
SASL_PASSWORD = "sasl-Pa55-8b2e4d6a"
SSL_KEY_PASSWORD = "ssl-key-Pa55-71c0"
TOKEN = "oauth-T0ken-5a5a5a"
ALL = (PG_PASSWORD, S3_KEY, S3_SECRET, SASL_PASSWORD, SSL_KEY_PASSWORD, TOKEN)


def _clean_env(**extra: str) -> dict[str, str]:
    return dict(extra)


def _secret_settings(tmp_path: Path) -> Settings:
    """Every kind of secret, from every kind of place: files, the environment, a flag."""
    (tmp_path / "dsn").write_text(f"postgresql://broker:{PG_PASSWORD}@db.example.org:5432/broker\n")
    (tmp_path / "s3-secret").write_text(S3_SECRET + "\n")
    (tmp_path / "sasl").write_text(SASL_PASSWORD)
    env = _clean_env(
        BROKER_PG_DSN_FILE=str(tmp_path / "dsn"),
        BROKER_S3_KEY=S3_KEY,
        BROKER_S3_SECRET_FILE=str(tmp_path / "s3-secret"),
        BROKER_KAFKA_SASL_PASSWORD_FILE=str(tmp_path / "sasl"),
        BROKER_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        BROKER_KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
        BROKER_KAFKA_SASL_USERNAME="alert-broker",
        BROKER_KAFKA_SSL_CA_LOCATION="/etc/ssl/ca.pem",
    )
    return load_settings(
        env=env,
        overrides={
            "kafka_ssl_key_password": SSL_KEY_PASSWORD,
            "kafka_option": f"sasl.oauthbearer.client.secret={TOKEN};ssl.endpoint.identification.algorithm=none",
            "output": "kafka://127.0.0.1:1/annotated;file:///tmp/out",
            "source": "kafka://127.0.0.1:1/ztf",
        },
    )


def _leaks(text: str) -> list[str]:
    return [s for s in ALL if s in text]


def test_secrets_come_from_files_and_the_environment(tmp_path):
    s = _secret_settings(tmp_path)
    assert (
        s.pg_dsn == f"postgresql://broker:{PG_PASSWORD}@db.example.org:5432/broker"
    )  # trailing newline gone
    assert s.s3_secret == S3_SECRET and s.s3_key == S3_KEY and s.kafka_sasl_password == SASL_PASSWORD
    assert s.storage_options == {"key": S3_KEY, "secret": S3_SECRET}
    for name in SECRET_FIELDS:
        assert isinstance(getattr(s, name), Secret), name


def test_a_secret_and_its_file_together_are_refused(tmp_path):
    (tmp_path / "dsn").write_text("postgresql://u:x@h/db")
    with pytest.raises(ValueError, match="'pg_dsn' and 'pg_dsn_file' are both given"):
        load_settings(
            env={"BROKER_PG_DSN_FILE": str(tmp_path / "dsn")}, overrides={"pg_dsn": "postgresql://h/db"}
        )


def test_an_unreadable_secret_file_names_the_path_not_the_content(tmp_path):
    with pytest.raises(ValueError, match=r"'s3_secret_file': cannot read .*missing"):
        load_settings(env={"BROKER_S3_SECRET_FILE": str(tmp_path / "missing")})


def test_nothing_shown_holds_a_secret(tmp_path):
    s = _secret_settings(tmp_path)
    public = s.public_dict()
    text = json.dumps(public)
    assert not _leaks(text), _leaks(text)
    assert public["pg_dsn"] == "postgresql://broker:***@db.example.org:5432/broker"  # user and host stay
    assert public["s3_secret"] == public["s3_key"] == public["kafka_sasl_password"] == "***"
    assert public["kafka_ssl_key_password"] == "***"
    assert (
        public["kafka_option"]
        == "sasl.oauthbearer.client.secret=***;ssl.endpoint.identification.algorithm=none"
    )
    assert public["pg_dsn_file"].endswith("dsn") and public["kafka_sasl_username"] == "alert-broker"
    assert not _leaks(repr(s)) and not _leaks(str(s))
    assert not _leaks(repr(s.storage_options)) and not _leaks(repr(s.kafka_config))
    assert not _leaks(repr(s.outputs))


def test_key_value_dsns_are_masked_too():
    s = load_settings(env={}, overrides={"pg_dsn": f"host=db.example.org user=broker password={PG_PASSWORD}"})
    assert PG_PASSWORD not in json.dumps(s.public_dict())
    assert password_of(str(s.pg_dsn)) == PG_PASSWORD
    assert redact(f"failed: {s.pg_dsn}") == "failed: host=db.example.org user=broker password=***"


def test_a_malformed_dsn_is_refused_at_load_time_without_its_password():
    with pytest.raises(ValueError, match="pg_dsn is not a PostgreSQL DSN") as err:
        load_settings(env={}, overrides={"pg_dsn": f"host=db password {PG_PASSWORD}x"})
    assert PG_PASSWORD not in str(err.value)


def test_secret_strings_pickle_and_stay_masked():
    value = Secret(S3_SECRET)
    again = pickle.loads(pickle.dumps(value))
    assert again == S3_SECRET and isinstance(again, Secret) and repr(again) == "'***'"
    assert repr(("secret", again)) == "('secret', '***')"  # e.g. a task's arguments that Dask logs


def test_redact_removes_registered_secrets_and_url_passwords(tmp_path):
    _secret_settings(tmp_path)  # registers them
    text = (
        f"boom: key {S3_KEY} secret {S3_SECRET} sasl {SASL_PASSWORD} postgresql://u:other-pw@h/db password=x1"
    )
    out = redact(text)
    assert not _leaks(out) and "other-pw" not in out and "x1" not in out


# ------------------------------------------------------------------------------------------- Kafka clients
class Recorder:
    """Stands in for confluent_kafka's Consumer/Producer/AdminClient: records the configuration it is given."""

    configs: list[dict] = []

    def __init__(self, conf: dict) -> None:
        Recorder.configs.append(dict(conf))

    def subscribe(self, topics, on_assign=None, on_revoke=None):
        pass

    def init_transactions(self, timeout):
        pass

    def list_topics(self, timeout=None):
        return type("Meta", (), {"topics": {"annotated": None, "t": None}})()

    def produce(self, *args, **kwargs):
        pass

    def begin_transaction(self):
        pass

    def commit_transaction(self, timeout=None):
        pass

    def poll(self, timeout=None):
        return 0

    def flush(self, timeout=None):
        return 0

    def close(self):
        pass


@pytest.fixture
def recorder(monkeypatch):
    Recorder.configs = []
    for module, names in ((kafka, ("Consumer", "Producer", "AdminClient")), (output, ("Producer",)),
                          (integrity, ("Consumer",))):  # fmt: skip
        for name in names:
            monkeypatch.setattr(module, name, Recorder)
    return Recorder


def _has_security(conf: dict) -> bool:
    return (
        conf.get("security.protocol") == "SASL_SSL"
        and conf.get("sasl.mechanism") == "SCRAM-SHA-512"
        and conf.get("sasl.username") == "alert-broker"
        and conf.get("sasl.password") == SASL_PASSWORD
        and conf.get("ssl.ca.location") == "/etc/ssl/ca.pem"
        and conf.get("ssl.key.password") == SSL_KEY_PASSWORD
        and conf.get("sasl.oauthbearer.client.secret") == TOKEN
        and conf.get("ssl.endpoint.identification.algorithm") == "none"
    )


def test_every_kafka_client_gets_the_security_settings(tmp_path, recorder, shared_data):
    s = _secret_settings(tmp_path)
    KafkaBatches(s, s.sources[0])  # the run's consumer (sources.open_source)
    (kafka_out,) = [o for o in output.open_outputs(s.outputs, "") if isinstance(o, output.KafkaOutput)]
    kafka_out.publish("b1", [])  # no topic to create
    kafka.ensure_topic("127.0.0.1:1", "t", config=s.kafka_config)  # exists: nothing created
    kafka.produce("127.0.0.1:1", "t", [("k", b"v")], config=s.kafka_config)
    integrity.open_readers(s)[0]._consumer()  # the integrity re-scan's own consumer
    kinds = len(recorder.configs)
    assert kinds == 5 and all(_has_security(c) for c in recorder.configs), recorder.configs
    assert (
        recorder.configs[1]["transactional.id"] == "alert-broker-annotated"
    )  # the output's own settings stay
    # `broker produce` reads the security settings from the environment
    archive = tmp_path / "night"
    archive.mkdir()
    one = sorted((shared_data / "ztf" / "fink_sample_1166").glob("*.avro"))[0]
    shutil.copy(one, archive / one.name)
    env = {"BROKER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "BROKER_KAFKA_SASL_PASSWORD": SASL_PASSWORD}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        assert cli.main(["produce", str(archive), "--to", "kafka://127.0.0.1:1/t"]) == 0
    assert all(c.get("sasl.password") == SASL_PASSWORD for c in recorder.configs[kinds:])
    assert len(recorder.configs) == kinds + 2  # admin (ensure_topic) and producer


def test_an_explicit_kafka_config_wins_over_the_urls(recorder):
    outputs = output.open_outputs(["kafka://127.0.0.1:1/x"], "", kafka_config={"security.protocol": "SSL"})
    assert recorder.configs[0]["security.protocol"] == "SSL" and outputs[0].url == "kafka://127.0.0.1:1/x"


def test_a_client_configuration_error_is_redacted():
    from alert_broker.storage.secrets import secret

    value = secret("not-a-protocol-" + SASL_PASSWORD)  # librdkafka quotes an invalid value in its error
    with pytest.raises(kafka.KafkaException) as err:
        kafka.client(kafka.Producer, {"bootstrap.servers": "127.0.0.1:1", "security.protocol": value})
    assert SASL_PASSWORD not in str(err.value) and "***" in str(err.value)
