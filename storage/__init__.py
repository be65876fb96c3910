"""The storage edge of the broker: the Parquet lake, PostgreSQL summaries, the raw archive and the manifest."""

from storage import manifest
from storage.archive import RawArchive, stamps_from_packet
from storage.catalogs import Catalog, CatalogInfo, import_catalog
from storage.embedded import EmbeddedPostgres
from storage.lake import NATURAL_KEYS, Lake
from storage.postgres import TABLES, SummaryStore

__all__ = [
    "NATURAL_KEYS",
    "TABLES",
    "Catalog",
    "CatalogInfo",
    "EmbeddedPostgres",
    "Lake",
    "RawArchive",
    "SummaryStore",
    "import_catalog",
    "manifest",
    "stamps_from_packet",
]
