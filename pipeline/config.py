"""One typed configuration for the broker: defaults < config file (TOML) < environment < CLI flags.

Every setting has an environment variable ``BROKER_<NAME>`` (upper case), e.g. ``BROKER_PG_DSN``,
``BROKER_BATCH_SIZE``, ``BROKER_LAKE_URL``. Production swaps each embedded default by configuration: a Kafka
source URL, an ``s3://`` lake, a PostgreSQL DSN, a Dask scheduler address.

Credentials (docs/guarantees.md, "Credentials"): the PostgreSQL DSN, the S3 keys and the Kafka SASL/SSL
passwords (``SECRET_FIELDS``) come from the environment, a file (``<name>_file``: a Kubernetes Secret mounted
as files works as is), or, for a laptop, the TOML file or a flag. Their values are ``storage.secrets.Secret``
strings (``repr`` masked) registered for ``redact``; ``public_dict`` (the ``pipeline_run`` row) masks them.
The Kafka security settings reach every Kafka client the broker creates (``kafka_config``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import unquote

import psycopg
from psycopg.conninfo import conninfo_to_dict

from alert_broker.pipeline.kafka import KafkaEndpoint
from alert_broker.pipeline.logs import FORMATS, LEVELS
from alert_broker.pipeline.worker_start import WORKER_START_METHODS
from alert_broker.storage.secrets import MASK, Secret, password_of, redact, secret
from alert_broker.surveys import ADAPTERS

KNOWN_SURVEYS = tuple(a.info.name for a in ADAPTERS)

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Where the real ZTF alerts live beside a checkout (used as the default night when present).
SHARED_ZTF = REPO_ROOT.parent / "shared" / "data" / "ztf" / "fink_sample_1166"

ENV_PREFIX = "BROKER_"
#: Settings that hold credentials: each has a ``<name>_file`` twin (the value read from that file at load time).
SECRET_FIELDS = ("pg_dsn", "s3_key", "s3_secret", "kafka_sasl_password", "kafka_ssl_key_password")
#: librdkafka properties given with ``--kafka-option`` whose values are masked (passwords, tokens, keys, PEMs).
_SECRET_OPTION = re.compile(r"(?i)(password|secret|token|credential|oauthbearer\.config|\.pem$|jaas)")


@dataclass
class Settings:
    """Everything a run needs. Field docs double as CLI help."""

    source: str = field(
        default="",
        metadata={
            "help": "a folder or .tar.gz of .avro files, kafka://host:port/topic[,topic], or 'sim'; several "
            "sources are read side by side (give the flag again, or separate them with ';')",
            "repeat": True,
        },
    )
    output: str = field(
        default="",
        metadata={
            "help": "the annotated output stream: kafka://host:port/topic or file://DIR (repeatable, or ';')",
            "repeat": True,
        },
    )
    filters: str = field(
        default="",
        metadata={
            "help": "user filters of the output stream: .toml/.py files or folders of them (repeatable, or ';'); "
            "'examples' loads the shipped ones",
            "repeat": True,
        },
    )
    watchlists: str = field(
        default="",
        metadata={
            "help": "watch lists to match every alert against: names imported with `broker watchlist import`"
        },
    )
    watchlist_root: str = field(
        default="", metadata={"help": "folder of imported watch lists (default OUT/watchlists)"}
    )
    filter: str = field(
        default="",
        metadata={
            "help": "a user filter as name=expression, e.g. 'bright=magpsf < 17 and rb > 0.8' (repeatable, or ';')",
            "repeat": True,
        },
    )
    survey: str = field(
        default="auto",
        metadata={
            "help": "surveys accepted: 'auto' (every known survey, recognised per packet) or a list such as "
            "'ztf,lsst'; SOURCE=sim simulates these (auto: ztf; 'ztf,lsst': the same sky seen by both)"
        },
    )
    night: str = field(default="", metadata={"help": "observing night label YYYYMMDD (selects it in SOURCE)"})
    out: Path = field(default=Path("data"), metadata={"help": "where the lake, database and reports go"})
    lake_url: str = field(default="", metadata={"help": "lake location: a folder or s3://bucket/prefix"})
    s3_endpoint_url: str = field(default="", metadata={"help": "S3 endpoint (any S3-compatible service)"})
    s3_key: str = field(default="", metadata={"help": "S3 access key (else the usual AWS variables)"})
    s3_key_file: str = field(default="", metadata={"help": "a file holding the S3 access key"})
    s3_secret: str = field(
        default="", metadata={"help": "S3 secret key (prefer the environment or s3_secret_file to a flag)"}
    )
    s3_secret_file: str = field(
        default="", metadata={"help": "a file holding the S3 secret key (e.g. a mounted Kubernetes Secret)"}
    )
    pg_dsn: str = field(default="", metadata={"help": "PostgreSQL DSN; empty starts embedded PostgreSQL"})
    pg_dsn_file: str = field(
        default="",
        metadata={
            "help": "a file holding the PostgreSQL DSN (e.g. a mounted Kubernetes Secret); or give a DSN "
            "without password and set PGPASSWORD / PGPASSFILE, which libpq reads itself"
        },
    )
    scheduler: str = field(
        default="", metadata={"help": "Dask scheduler address; empty starts a LocalCluster"}
    )
    n_workers: int = field(default=2, metadata={"help": "LocalCluster worker processes"})
    threads_per_worker: int = field(default=1, metadata={"help": "threads per LocalCluster worker"})
    worker_start: str = field(
        default="forkserver",
        metadata={
            "help": "how a LocalCluster starts its worker processes: 'forkserver' (forked from one process that "
            "imported the broker's worker code once: a worker is ready in about a second) or 'spawn' (each "
            "worker imports everything itself, Dask's default)"
        },
    )
    dashboard_address: str = field(default=":8787", metadata={"help": "Dask dashboard address"})
    adapt: str = field(
        default="",
        metadata={
            "help": "MIN:MAX: scale the Dask workers between MIN and MAX with the scheduler's adaptive target "
            "(LocalCluster or --cluster kubernetes); empty: a fixed --n-workers"
        },
    )
    cluster: str = field(
        default="local",
        metadata={
            "help": "where the Dask cluster comes from without --scheduler: 'local' (a LocalCluster) or "
            "'kubernetes' (a DaskCluster started through the Dask operator; docs/kubernetes.md)"
        },
    )
    image: str = field(
        default="alert-broker:latest", metadata={"help": "the broker image of --cluster kubernetes"}
    )
    namespace: str = field(default="", metadata={"help": "Kubernetes namespace of --cluster kubernetes"})
    metrics_port: int = field(
        default=0,
        metadata={
            "help": "serve Prometheus metrics at http://0.0.0.0:PORT/metrics (0: off; docs/operations.md)"
        },
    )
    report_every_s: float = field(
        default=300.0,
        metadata={
            "help": "rewrite the run report (OUT/reports) this often while a run goes on (0: at the end)"
        },
    )
    # 2000: a batch's fixed costs (manifest, PostgreSQL round trips, task overhead, one Parquet file per table)
    # are spread over 4x the alerts of 500, which cut the CPU per alert by ~30 % (docs/operations.md, "Batch
    # size"); a slow stream still gets small batches, every batch_timeout_s.
    batch_size: int = field(default=2000, metadata={"help": "messages per micro-batch"})
    batch_timeout_s: float = field(default=5.0, metadata={"help": "max seconds to fill a micro-batch"})
    kafka_group: str = field(default="alert-broker", metadata={"help": "Kafka consumer group"})
    kafka_idle_stop_s: float = field(
        default=10.0,
        metadata={
            "help": "run-night: stop after this long with no new message while holding partitions (0 = never)"
        },
    )
    kafka_connect_s: float = field(
        default=30.0,
        metadata={"help": "how long a run waits for its Kafka source's cluster to answer before it stops"},
    )
    kafka_security_protocol: str = field(
        default="",
        metadata={
            "help": "Kafka security.protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (empty: librdkafka's)"
        },
    )
    kafka_sasl_mechanism: str = field(
        default="", metadata={"help": "Kafka sasl.mechanism: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, ..."}
    )
    kafka_sasl_username: str = field(default="", metadata={"help": "Kafka sasl.username"})
    kafka_sasl_password: str = field(
        default="", metadata={"help": "Kafka sasl.password (prefer the environment or the _file setting)"}
    )
    kafka_sasl_password_file: str = field(
        default="",
        metadata={"help": "a file holding the Kafka SASL password (e.g. a mounted Kubernetes Secret)"},
    )
    kafka_ssl_ca_location: str = field(default="", metadata={"help": "Kafka ssl.ca.location (a CA file)"})
    kafka_ssl_certificate_location: str = field(
        default="", metadata={"help": "Kafka ssl.certificate.location (the client certificate, mutual TLS)"}
    )
    kafka_ssl_key_location: str = field(
        default="", metadata={"help": "Kafka ssl.key.location (the client key)"}
    )
    kafka_ssl_key_password: str = field(default="", metadata={"help": "Kafka ssl.key.password"})
    kafka_ssl_key_password_file: str = field(
        default="", metadata={"help": "a file holding the Kafka ssl.key.password"}
    )
    kafka_option: str = field(
        default="",
        metadata={
            "help": "any other librdkafka property for every Kafka client, as key=value (repeatable, or ';'), "
            "e.g. 'ssl.endpoint.identification.algorithm=none'; values of password/secret/token keys are masked",
            "repeat": True,
        },
    )
    pipeline_depth: int = field(
        default=3,
        metadata={"help": "batches in the cluster beside the one being finished (0 = one at a time)"},
    )
    # One decode and one region task per worker thread and batch: each batch runs on every worker. (Whole batches
    # side by side, 0.5 each, were better at 500-alert batches; at 2000 they leave a core idle while a batch's
    # region tasks wait on the previous batch's: docs/operations.md, "Batch size".)
    chunks_per_thread: float = field(
        default=1.0, metadata={"help": "decode tasks per worker thread and batch"}
    )
    regions_per_thread: float = field(
        default=1.0, metadata={"help": "sky-region tasks per worker thread and batch"}
    )
    healpix_order: int = field(
        default=10, metadata={"help": "HEALPix order used to group alerts by sky region"}
    )
    history: bool = field(
        default=True,
        metadata={"help": "merge each object's stored light curve (all earlier nights) before the science"},
    )
    history_order: int = field(
        default=4, metadata={"help": "HEALPix order of the light-curve history store's pixels"}
    )
    # every region task reads its pixels and the whole deltas folder: on a 96k-alert simulated night 1024 MB took
    # the cache's hits from 48 % (256 MB) to 85 % of the files read and the rate ~950 -> ~1135 alerts/s
    # (docs/operations.md, "The history cache").
    history_cache_mb: float = field(
        default=1024.0, metadata={"help": "history rows each worker process keeps in memory (MB)"}
    )
    compact_history: bool = field(
        default=True,
        metadata={"help": "merge each touched history pixel's files into one at the end of a run"},
    )
    compact_every: int = field(
        default=32,
        metadata={
            "help": "also fold the history deltas into their pixels every N committed batches (0: only at the "
            "end); every history read scans the deltas, so they must not grow with the night"
        },
    )
    compact_lake: bool = field(
        default=False,
        metadata={
            "help": "at the end of a run, fold each lake folder's per-batch files into one (docs/lake-tables.md, "
            "'Compaction'); also `broker lake compact`"
        },
    )
    batch_retries: int = field(
        default=2, metadata={"help": "times a batch whose tasks failed (a worker died) is submitted again"}
    )
    task_allowed_failures: int = field(
        default=3,
        metadata={
            "help": "worker deaths a task may cause before Dask gives up on it (a LocalCluster's scheduler)"
        },
    )
    pg_retry_s: float = field(
        default=120.0, metadata={"help": "how long to retry while PostgreSQL is unreachable before stopping"}
    )
    publish_lake: bool = field(
        default=True,
        metadata={
            "help": "at the end of a run, write the analysis-ready lake tables (current objects, latest "
            "probabilities, deduplicated light curves: docs/lake-tables.md); reads the whole history store"
        },
    )
    resume: bool = field(
        default=False,
        metadata={
            "help": "archives: skip the packets an earlier run of the same archive committed (the batch "
            "manifest), e.g. after a stop; without it a night is processed from its start. Kafka always resumes "
            "from its committed offsets"
        },
    )
    progress: bool = field(default=True, metadata={"help": "show a progress bar (terminals)"})
    log_level: str = field(default="INFO", metadata={"help": "DEBUG, INFO, WARNING or ERROR"})
    log_format: str = field(
        default="text", metadata={"help": "text (terminals) or json (one object per line)"}
    )
    features: bool = field(default=True, metadata={"help": "compute light-curve features (>= 6 detections)"})
    catalog_root: str = field(
        default="", metadata={"help": "folder of imported catalogues (default OUT/catalogs)"}
    )
    xmatch: str = field(
        default="",
        metadata={"help": "catalogues to cross-match: 'name:radius_arcsec[:col,col];name2:radius'"},
    )
    lc_model: str = field(
        default="auto",
        metadata={
            "help": "light-curve classifiers: 'auto' (the shipped lc_hierarchical for ZTF features and "
            "lc_hierarchical_lsst for LSST's flux features, latest versions), name[:version][,name...] from the "
            "model registry, or 'none'"
        },
    )
    stamp_model: str = field(
        default="auto",
        metadata={
            "help": "stamp classifiers for the first alert of each object, one per survey: name[:version][,...], "
            "'auto' (stamp_classifier for ZTF and stamp_classifier_lsst for LSST, those the registry has) or 'none'"
        },
    )
    models: str = field(
        default="",
        metadata={"help": "the model registry folder (default: the models installed with the package)"},
    )
    sim_objects: int = field(default=8000, metadata={"help": "SOURCE=sim: objects in the simulated night"})
    sim_seed: int = field(default=1, metadata={"help": "SOURCE=sim: random seed of the simulated night"})

    # ----------------------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        """Secrets from their ``_file`` settings (when the value itself is not given), then wrapped as
        ``Secret`` (``repr`` masked) and registered for ``redact`` (the DSN's password, not the whole DSN, so that
        a redacted message still names the host)."""
        for name in SECRET_FIELDS:
            path = getattr(self, f"{name}_file")
            if path and not getattr(self, name):
                setattr(self, name, read_secret_file(path, f"{name}_file"))
            value = getattr(self, name)
            if value and name == "pg_dsn":
                self.pg_dsn = Secret(value)
                if password := password_of(value):
                    secret(password)
                    secret(unquote(password))
            elif value:
                setattr(self, name, secret(value))
        hidden = [value for key, value in self.kafka_options if _SECRET_OPTION.search(key)]
        for value in hidden:
            secret(value)
        if hidden:
            self.kafka_option = Secret(
                self.kafka_option
            )  # its repr masked; public_dict masks the values only

    @property
    def kafka_options(self) -> tuple[tuple[str, str], ...]:
        """``kafka_option`` parsed: ((librdkafka property, value), ...)."""
        out = []
        for item in (x.strip() for x in self.kafka_option.split(";")):
            if not item:
                continue
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"kafka_option {key.strip() or item[:20]!r}...: expected key=value")
            out.append((key.strip(), value.strip()))
        return tuple(out)

    @property
    def kafka_config(self) -> dict[str, str]:
        """The librdkafka properties every Kafka client of the run gets (consumer, producer, admin): the
        security settings, then ``kafka_option`` (which may override them). Passwords are ``Secret`` strings."""
        conf: dict[str, str] = {}
        for name, prop in (
            ("kafka_security_protocol", "security.protocol"),
            ("kafka_sasl_mechanism", "sasl.mechanism"),
            ("kafka_sasl_username", "sasl.username"),
            ("kafka_sasl_password", "sasl.password"),
            ("kafka_ssl_ca_location", "ssl.ca.location"),
            ("kafka_ssl_certificate_location", "ssl.certificate.location"),
            ("kafka_ssl_key_location", "ssl.key.location"),
            ("kafka_ssl_key_password", "ssl.key.password"),
        ):
            value = getattr(self, name)
            if value:
                conf[prop] = value
        for key, value in self.kafka_options:
            conf[key] = secret(value) if _SECRET_OPTION.search(key) else value
        return conf

    @property
    def sources(self) -> list[str]:
        """``source`` split into the sources read side by side (one empty entry: the default night)."""
        parts = [s.strip() for s in self.source.split(";") if s.strip()]
        return parts or [""]

    @property
    def adapt_bounds(self) -> tuple[int, int] | None:
        """(minimum, maximum) workers of ``--adapt MIN:MAX``; None for a fixed cluster."""
        if not self.adapt:
            return None
        m = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", self.adapt)
        if not m or int(m.group(1)) > int(m.group(2)) or int(m.group(2)) < 1:
            raise ValueError(f"--adapt must be MIN:MAX with 0 <= MIN <= MAX and MAX >= 1, not {self.adapt!r}")
        return int(m.group(1)), int(m.group(2))

    @property
    def watchlist_names(self) -> tuple[str, ...]:
        return tuple(s.strip() for s in self.watchlists.replace(",", ";").split(";") if s.strip())

    @property
    def watchlists_dir(self) -> str:
        return self.watchlist_root or str(Path(self.out) / "watchlists")

    @property
    def outputs(self) -> list[str]:
        """The output URLs; ``kafka://`` ones carry the run's Kafka client settings (``KafkaEndpoint``), so that
        ``output.open_outputs`` gives them to the producer."""
        urls = [s.strip() for s in self.output.split(";") if s.strip()]
        return [KafkaEndpoint(u, self.kafka_config) if u.startswith("kafka://") else u for u in urls]

    @property
    def filter_paths(self) -> tuple[str, ...]:
        return tuple(s.strip() for s in self.filters.split(";") if s.strip())

    @property
    def filter_expressions(self) -> tuple[tuple[str, str], ...]:
        out = []
        for item in (s.strip() for s in self.filter.split(";")):
            if not item:
                continue
            name, sep, expression = item.partition("=")
            if not sep or not name.strip() or not expression.strip():
                raise ValueError(f"filter {item!r}: expected name=expression")
            out.append((name.strip(), expression.strip()))
        return tuple(out)

    @property
    def surveys(self) -> tuple[str, ...]:
        """The accepted surveys (empty: every known one)."""
        spec = self.survey.strip().lower()
        if spec in ("", "auto", "all"):
            return ()
        return tuple(s.strip() for s in spec.replace("+", ",").split(",") if s.strip())

    @property
    def lake(self) -> str:
        return self.lake_url or str(Path(self.out) / "lake")

    @property
    def storage_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if self.s3_endpoint_url:
            opts["endpoint_url"] = self.s3_endpoint_url
        if self.s3_key:
            opts["key"] = self.s3_key
        if self.s3_secret:
            opts["secret"] = self.s3_secret
        return opts

    @property
    def catalogs(self) -> str:
        return self.catalog_root or str(Path(self.out) / "catalogs")

    @property
    def xmatch_specs(self) -> tuple[tuple[str, float, tuple[str, ...]], ...]:
        """``xmatch`` parsed: ((name, radius_arcsec, columns), ...)."""
        return parse_xmatch(self.xmatch)

    @property
    def pg_data_dir(self) -> Path:
        return Path(self.out) / "pg"

    @property
    def reports_dir(self) -> Path:
        return Path(self.out) / "reports"

    def public_dict(self) -> dict[str, Any]:
        """The settings as plain JSON values, secrets masked (stored with each pipeline run): the DSN keeps its
        user and host, every other secret is ``***``; ``_file`` settings show the path, never the content."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d = {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}
        for name in SECRET_FIELDS:
            if d.get(name):
                d[name] = MASK
        if self.pg_dsn:
            d["pg_dsn"] = redact(_mask_dsn(str(self.pg_dsn)))
        if self.kafka_option:
            d["kafka_option"] = ";".join(
                f"{k}={MASK if _SECRET_OPTION.search(k) else v}" for k, v in self.kafka_options
            )
        return {k: (str(v) if isinstance(v, str) else v) for k, v in d.items()}


def parse_xmatch(spec: str) -> tuple[tuple[str, float, tuple[str, ...]], ...]:
    """'vsx:1.5:Type,Period;gcvs:2' -> (('vsx', 1.5, ('Type', 'Period')), ('gcvs', 2.0, ()))."""
    out = []
    for item in (x.strip() for x in spec.split(";")):
        if not item:
            continue
        parts = item.split(":")
        if len(parts) not in (2, 3) or not parts[0]:
            raise ValueError(f"xmatch entry {item!r}: expected name:radius_arcsec[:col,col]")
        try:
            radius = float(parts[1])
        except ValueError:
            raise ValueError(f"xmatch entry {item!r}: radius {parts[1]!r} is not a number") from None
        if not radius > 0:
            raise ValueError(f"xmatch entry {item!r}: radius must be > 0 arcsec")
        cols = tuple(c for c in parts[2].split(",") if c) if len(parts) == 3 else ()
        out.append((parts[0], radius, cols))
    return tuple(out)


def read_secret_file(path: str, setting: str) -> str:
    """A secret from a file (a mounted Kubernetes Secret, a Docker secret): its text without the trailing
    newline. The error names the setting and the path, never the content."""
    try:
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as err:
        why = err.strerror if isinstance(err, OSError) and err.strerror else type(err).__name__
        raise ValueError(f"setting {setting!r}: cannot read {path}: {why}") from None


def _mask_dsn(dsn: str) -> str:
    if "@" not in dsn:
        return dsn
    head, _, tail = dsn.rpartition("@")
    if ":" in head.split("//", 1)[-1]:
        scheme, _, cred = head.partition("//")
        user = cred.split(":", 1)[0]
        return f"{scheme}//{user}:***@{tail}"
    return dsn


def _coerce(value: Any, typ: Any, name: str) -> Any:
    try:
        if typ is bool:
            if isinstance(value, bool):
                return value
            s = str(value).strip().lower()
            if s in {"1", "true", "yes", "on"}:
                return True
            if s in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(value)
        if typ is int:
            return int(value)
        if typ is float:
            return float(value)
        if typ is Path:
            return Path(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"setting {name!r}: cannot read {value!r} as {typ.__name__}") from exc


def _types() -> dict[str, Any]:
    return get_type_hints(Settings)


def load_settings(
    config_file: str | Path | None = None,
    env: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Build the settings from the layers, lowest first: defaults, TOML file, environment, overrides (CLI)."""
    types = _types()
    values: dict[str, Any] = {}
    env = dict(os.environ if env is None else env)
    config_file = config_file or env.get(ENV_PREFIX + "CONFIG")
    if config_file:
        with open(config_file, "rb") as fh:
            data = tomllib.load(fh)
        data = data.get("broker", data)
        for key, val in data.items():
            if key not in types:
                raise ValueError(f"unknown setting {key!r} in {config_file}")
            values[key] = _coerce(val, types[key], key)
    for name, typ in types.items():
        var = ENV_PREFIX + name.upper()
        if var in env:
            values[name] = _coerce(env[var], typ, name)
    for key, val in (overrides or {}).items():
        if val is None:
            continue
        if key not in types:
            raise ValueError(f"unknown setting {key!r}")
        values[key] = _coerce(val, types[key], key)
    for name in SECRET_FIELDS:
        if values.get(name) and values.get(f"{name}_file"):
            raise ValueError(
                f"settings {name!r} and {name + '_file'!r} are both given; give one (the file is read at load time)"
            )
    settings = Settings(**values)
    _validate(settings)
    return settings


def _validate(s: Settings) -> None:
    if s.batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if s.n_workers < 1 or s.threads_per_worker < 1:
        raise ValueError("n_workers and threads_per_worker must be >= 1")
    if s.adapt:
        s.adapt_bounds  # noqa: B018 - validates MIN:MAX
    if s.worker_start not in WORKER_START_METHODS:
        raise ValueError(
            f"worker_start must be one of {', '.join(WORKER_START_METHODS)}, not {s.worker_start!r}"
        )
    if s.cluster not in ("local", "kubernetes"):
        raise ValueError(f"--cluster must be 'local' or 'kubernetes', not {s.cluster!r}")
    if not 0 <= s.healpix_order <= 29:
        raise ValueError("healpix_order must be within 0..29")
    if not 0 <= s.history_order <= 13:
        raise ValueError("history_order must be within 0..13")
    if s.history_cache_mb < 0:
        raise ValueError("history_cache_mb must be >= 0")
    if s.kafka_connect_s <= 0:
        raise ValueError("kafka_connect_s must be > 0")
    parse_xmatch(s.xmatch)
    s.filter_expressions  # noqa: B018 - raises on a malformed filter
    for url in s.outputs:
        if not url.startswith(("kafka://", "file://")):
            raise ValueError(f"output {url!r}: expected kafka://host:port/topic or file://DIR")
    unknown = [x for x in s.surveys if x not in KNOWN_SURVEYS]
    if unknown:
        raise ValueError(f"survey: unknown {', '.join(unknown)}; known: auto, {', '.join(KNOWN_SURVEYS)}")
    if s.log_level.upper() not in LEVELS:
        raise ValueError(f"log_level must be one of {', '.join(LEVELS)}")
    if s.log_format not in FORMATS:
        raise ValueError(f"log_format must be one of {', '.join(FORMATS)}")
    s.kafka_options  # noqa: B018 - raises on a malformed kafka_option
    if s.pg_dsn:
        try:
            conninfo_to_dict(str(s.pg_dsn))
        except (
            psycopg.Error
        ) as err:  # libpq's parse errors quote the DSN: redacted, and raised here, not later
            raise ValueError(f"pg_dsn is not a PostgreSQL DSN: {redact(str(err))}") from None


def settings_fields() -> list[dataclasses.Field]:
    return list(fields(Settings))
