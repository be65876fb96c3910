"""One typed configuration for the broker: defaults < config file (TOML) < environment < CLI flags.

Every setting has an environment variable ``BROKER_<NAME>`` (upper case), e.g. ``BROKER_PG_DSN``,
``BROKER_BATCH_SIZE``, ``BROKER_LAKE_URL``. Production swaps each embedded default by configuration: a Kafka
source URL, an ``s3://`` lake, a PostgreSQL DSN, a Dask scheduler address.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from alert_broker.pipeline.logs import FORMATS, LEVELS
from alert_broker.surveys import ADAPTERS

KNOWN_SURVEYS = tuple(a.info.name for a in ADAPTERS)

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Where the real ZTF alerts live beside a checkout (used as the default night when present).
SHARED_ZTF = REPO_ROOT.parent / "shared" / "data" / "ztf" / "fink_sample_1166"

ENV_PREFIX = "BROKER_"


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
    s3_secret: str = field(default="", metadata={"help": "S3 secret key"})
    pg_dsn: str = field(default="", metadata={"help": "PostgreSQL DSN; empty starts embedded PostgreSQL"})
    scheduler: str = field(
        default="", metadata={"help": "Dask scheduler address; empty starts a LocalCluster"}
    )
    n_workers: int = field(default=2, metadata={"help": "LocalCluster worker processes"})
    threads_per_worker: int = field(default=1, metadata={"help": "threads per LocalCluster worker"})
    dashboard_address: str = field(default=":8787", metadata={"help": "Dask dashboard address"})
    batch_size: int = field(default=500, metadata={"help": "messages per micro-batch"})
    batch_timeout_s: float = field(default=5.0, metadata={"help": "max seconds to fill a micro-batch"})
    kafka_group: str = field(default="alert-broker", metadata={"help": "Kafka consumer group"})
    kafka_idle_stop_s: float = field(
        default=10.0, metadata={"help": "run-night: stop after this long with no new message (0 = never)"}
    )
    pipeline_depth: int = field(
        default=3,
        metadata={"help": "batches in the cluster beside the one being finished (0 = one at a time)"},
    )
    # On few workers, whole batches side by side beat splitting each batch across workers (no transfers between
    # workers); on many, each batch is still cut into n_threads/2 decode and region tasks.
    chunks_per_thread: float = field(
        default=0.5, metadata={"help": "decode tasks per worker thread and batch"}
    )
    regions_per_thread: float = field(
        default=0.5, metadata={"help": "sky-region tasks per worker thread and batch"}
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
    history_cache_mb: float = field(
        default=256.0, metadata={"help": "history rows each worker process keeps in memory (MB)"}
    )
    compact_history: bool = field(
        default=True,
        metadata={"help": "merge each touched history pixel's files into one at the end of a run"},
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
            "help": "stamp classifier for the first alert of each object: name[:version], 'auto' (the shipped "
            "stamp_classifier, if present) or 'none'"
        },
    )
    models: str = field(
        default="",
        metadata={"help": "the model registry folder (default: the models installed with the package)"},
    )
    sim_objects: int = field(default=8000, metadata={"help": "SOURCE=sim: objects in the simulated night"})
    sim_seed: int = field(default=1, metadata={"help": "SOURCE=sim: random seed of the simulated night"})

    # ----------------------------------------------------------------------------------------------
    @property
    def sources(self) -> list[str]:
        """``source`` split into the sources read side by side (one empty entry: the default night)."""
        parts = [s.strip() for s in self.source.split(";") if s.strip()]
        return parts or [""]

    @property
    def watchlist_names(self) -> tuple[str, ...]:
        return tuple(s.strip() for s in self.watchlists.replace(",", ";").split(";") if s.strip())

    @property
    def watchlists_dir(self) -> str:
        return self.watchlist_root or str(Path(self.out) / "watchlists")

    @property
    def outputs(self) -> list[str]:
        return [s.strip() for s in self.output.split(";") if s.strip()]

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
        """The settings as plain JSON values, secrets masked (stored with each pipeline run)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d = {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}
        if d.get("s3_secret"):
            d["s3_secret"] = "***"
        if d.get("pg_dsn") and "@" in d["pg_dsn"]:
            d["pg_dsn"] = _mask_dsn(d["pg_dsn"])
        return d


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


_SECRET_IN_URL = re.compile(r"(://[^:/@\s]+:)([^@\s]+)(@)")
_SECRET_PARAM = re.compile(
    r"(?i)\b(password|passwd|secret|token|sasl\.password|aws_secret_access_key)(\s*[=:]\s*)(\S+)"
)


def redact(text: str) -> str:
    """``text`` with passwords in URLs/DSNs and ``password=...``-style values replaced by ``***`` (for logs,
    reports and error messages)."""
    text = _SECRET_IN_URL.sub(r"\1***\3", text)
    return _SECRET_PARAM.sub(r"\1\2***", text)


def _mask_dsn(dsn: str) -> str:
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
    settings = Settings(**values)
    _validate(settings)
    return settings


def _validate(s: Settings) -> None:
    if s.batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if s.n_workers < 1 or s.threads_per_worker < 1:
        raise ValueError("n_workers and threads_per_worker must be >= 1")
    if not 0 <= s.healpix_order <= 29:
        raise ValueError("healpix_order must be within 0..29")
    if not 0 <= s.history_order <= 13:
        raise ValueError("history_order must be within 0..13")
    if s.history_cache_mb < 0:
        raise ValueError("history_cache_mb must be >= 0")
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


def settings_fields() -> list[dataclasses.Field]:
    return list(fields(Settings))
