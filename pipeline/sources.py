"""Where batches come from: a night archive (folder or .tar.gz) or Kafka topics, behind one small interface."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from alert_broker.pipeline.archive import archive_source, count_archive, iter_archive
from alert_broker.pipeline.config import SHARED_ZTF, Settings
from alert_broker.pipeline.kafka import KafkaSource, parse_kafka_url
from alert_broker.pipeline.simulate_night import simulated_night
from alert_broker.surveys.messages import RawMessage


class Source(Protocol):
    name: str

    def batches(self) -> Iterator[list[RawMessage]]: ...
    def commit(self, messages: list[RawMessage]) -> None: ...
    def total(self) -> int | None: ...
    def close(self) -> None: ...


class ArchiveSource:
    """A night archive. Files are read in sorted order, so offsets (and batch ids) are stable across re-runs."""

    def __init__(self, path: Path, batch_size: int, read_on_workers: bool = False) -> None:
        self.path = Path(path)
        self.batch_size = batch_size
        self.read_on_workers = read_on_workers
        self.name = archive_source(self.path)

    def batches(self) -> Iterator[list[RawMessage]]:
        return iter_archive(self.path, self.batch_size, lazy=self.read_on_workers)

    def commit(self, messages: list[RawMessage]) -> None:
        """Nothing to acknowledge: the batch manifest records what an archive run has written."""

    def total(self) -> int | None:
        return count_archive(self.path)

    def close(self) -> None:
        pass


class KafkaBatches:
    """Adapter from :class:`pipeline.kafka.KafkaSource` to the Source interface."""

    def __init__(self, settings: Settings) -> None:
        url = parse_kafka_url(settings.source)
        self._src = KafkaSource(
            url.bootstrap,
            url.topics,
            settings.kafka_group,
            batch_size=settings.batch_size,
            batch_timeout_s=settings.batch_timeout_s,
            idle_stop_s=settings.kafka_idle_stop_s,
        )
        self.name = self._src.name

    def batches(self) -> Iterator[list[RawMessage]]:
        return self._src.batches()

    def commit(self, messages: list[RawMessage]) -> None:
        self._src.commit(messages)

    def total(self) -> int | None:
        return None

    def close(self) -> None:
        self._src.close()


def resolve_archive(source: str, night: str) -> Path:
    """The archive to read: SOURCE itself, or inside it the night NIGHT (``night=NIGHT/``, ``NIGHT/`` or ZTF's
    ``ztf_public_NIGHT.tar.gz``)."""
    path = Path(source) if source else SHARED_ZTF
    if not path.exists():
        if not source:
            raise FileNotFoundError(
                f"no SOURCE given and the real ZTF sample is not at {SHARED_ZTF}: "
                "pass --source (a folder or .tar.gz of .avro files, or kafka://host:port/topic), or --source sim"
            )
        raise FileNotFoundError(f"source not found: {path}")
    if night and path.is_dir():
        for candidate in (path / f"night={night}", path / night, path / f"ztf_public_{night}.tar.gz"):
            if candidate.exists():
                return candidate
    return path


def open_source(settings: Settings) -> Source:
    src = settings.source
    local = not settings.scheduler  # a LocalCluster's workers share the driver's disk: they read the files
    if src.startswith("kafka://"):
        return KafkaBatches(settings)
    if src == "sim" or (not src and not SHARED_ZTF.exists()):
        return ArchiveSource(simulated_night(settings), settings.batch_size, local)
    return ArchiveSource(resolve_archive(src, settings.night), settings.batch_size, local)
