"""The storage edge of the broker: the Parquet lake, PostgreSQL summaries, the raw archive and the manifest."""

from alert_broker.storage import compaction, dead_letters, manifest, retention
from alert_broker.storage.archive import RawArchive, stamps_from_packet
from alert_broker.storage.catalogs import Catalog, CatalogInfo, import_catalog
from alert_broker.storage.embedded import EmbeddedPostgres
from alert_broker.storage.lake import NATURAL_KEYS, Lake, LakeUnavailable
from alert_broker.storage.postgres import TABLES, SummaryStore

__all__ = [
    "NATURAL_KEYS",
    "TABLES",
    "Catalog",
    "CatalogInfo",
    "EmbeddedPostgres",
    "Lake",
    "LakeUnavailable",
    "RawArchive",
    "SummaryStore",
    "compaction",
    "dead_letters",
    "import_catalog",
    "manifest",
    "retention",
    "stamps_from_packet",
]
