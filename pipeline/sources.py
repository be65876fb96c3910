"""Where batches come from: a night archive (folder or .tar.gz) or Kafka topics, behind one small interface."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

from alert_broker.pipeline.archive import archive_source, changed_ranges, count_archive, iter_archive
from alert_broker.pipeline.config import SHARED_ZTF, Settings
from alert_broker.pipeline.kafka import KafkaSource, parse_kafka_url
from alert_broker.pipeline.simulate_night import simulated_night
from alert_broker.surveys.messages import RawMessage


class Source(Protocol):
    name: str

    def batches(self) -> Iterator[list[RawMessage]]:
        """Micro-batches in order; an empty one means nothing arrived yet (the driver commits what finished)."""
        ...

    def commit(self, messages: list[RawMessage]) -> None: ...
    def total(self) -> int | None: ...
    def close(self) -> None: ...


class ResumeRefused(ValueError):
    """``--resume`` of an archive that cannot be the one the manifest's committed offsets were read from."""


class ArchiveSource:
    """A night archive. Files are read in sorted order, so offsets (and batch ids) are stable across re-runs."""

    def __init__(self, path: Path, batch_size: int, read_on_workers: bool = False) -> None:
        self.path = Path(path)
        self.batch_size = batch_size
        self.read_on_workers = read_on_workers
        self.name = archive_source(self.path)
        self.skip: list[tuple[int, int]] = []  # offset ranges an earlier run committed (``resume``)

    def batches(self) -> Iterator[list[RawMessage]]:
        return iter_archive(self.path, self.batch_size, lazy=self.read_on_workers, skip=self.skip)

    def commit(self, messages: list[RawMessage]) -> None:
        """Nothing to acknowledge: the batch manifest records what an archive run has written."""

    def resume(self, committed: list[tuple[int, int]], digests: Sequence[tuple[int, int, str]] = ()) -> int:
        """Skip the offsets an earlier run of this archive committed (``committed``: the manifest's ranges of
        partition 0); returns how many. The offsets are positions in the archive's fixed order, so they mean
        the same packets only if the archive is the one that run read. ``digests`` (``(first, last, digest)``
        of each committed batch, from the manifest) say which files each batch read: an archive whose files
        at those offsets are not the same ones (a file added, removed or renamed before them), or that holds
        fewer packets than the committed offsets reach, is refused. Files added after the committed offsets
        are fine (an archive still being filled)."""
        if not committed:
            return 0
        last = max(b for _, b in committed)
        n, changed = changed_ranges(self.path, digests)
        if last >= n:
            raise ResumeRefused(
                f"cannot resume {self.name}: an earlier run committed offsets up to {last}, but {self.path} holds "
                f"{n} packets, so it is not the archive that run read (run without --resume to process it whole)"
            )
        if changed:
            a, b = changed[0]
            raise ResumeRefused(
                f"cannot resume {self.name}: the files at offsets {a}-{b} of {self.path} are not those an earlier "
                f"run read and committed there ({len(changed)} of {len(digests)} committed batches differ: files "
                f"added, removed or renamed in the middle of the archive), so skipping its committed offsets would "
                f"skip other files (run without --resume to process it whole)"
            )
        self.skip = list(committed)
        return sum(b - a + 1 for a, b in committed)

    def total(self) -> int | None:
        return count_archive(self.path) - sum(b - a + 1 for a, b in self.skip)

    def close(self) -> None:
        pass


class KafkaBatches:
    """Adapter from :class:`pipeline.kafka.KafkaSource` to the Source interface."""

    def __init__(self, settings: Settings, source: str | None = None) -> None:
        url = parse_kafka_url(source or settings.source)
        self._src = KafkaSource(
            url.bootstrap,
            url.topics,
            settings.kafka_group,
            batch_size=settings.batch_size,
            batch_timeout_s=settings.batch_timeout_s,
            idle_stop_s=settings.kafka_idle_stop_s,
            extra_config=settings.kafka_config,  # security.protocol, SASL, SSL (docs/guarantees.md)
        )
        self.name = self._src.name

    def batches(self) -> Iterator[list[RawMessage]]:
        return self._src.batches()

    @property
    def yield_idle(self) -> bool:
        """Whether ``batches`` yields an empty batch after each empty poll (the driver's cue to commit what
        finished while the topic is quiet)."""
        return self._src.yield_idle

    @yield_idle.setter
    def yield_idle(self, value: bool) -> None:
        self._src.yield_idle = value

    def on_revoke(self, drain: Callable[[], None] | None) -> None:
        """``drain`` finishes and commits every batch in flight; the consumer calls it when the group takes its
        partitions away (another driver joined or left), before they move."""
        self._src.on_revoke = drain

    def commit(self, messages: list[RawMessage]) -> None:
        self._src.commit(messages)

    def total(self) -> int | None:
        return None

    def lag(self) -> int:
        """Messages of the assigned partitions not yet consumed (the consumer lag, for the metrics)."""
        return self._src.lag()

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


class MultiSource:
    """Several sources read side by side (e.g. a ZTF topic and an LSST archive): batches alternate between
    them, and each batch's offsets are committed to the source that gave its messages."""

    def __init__(self, sources: list[Source]) -> None:
        names = [s.name for s in sources]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(
                f"two sources share the name {', '.join(twice)} (archives are named after their folder or file): "
                "their offsets would collide in the batch manifest; rename one"
            )
        self.sources = sources
        self.name = "+".join(names)
        self._owner: dict[str, Source] = {}

    def batches(self) -> Iterator[list[RawMessage]]:
        streams = [(s, iter(s.batches())) for s in self.sources]
        while streams:
            for item in list(streams):
                source, it = item
                batch = next(it, None)
                if batch is None:
                    streams.remove(item)
                    continue
                for m in batch:
                    self._owner.setdefault(m.source, source)
                yield batch

    def commit(self, messages: list[RawMessage]) -> None:
        by_source: dict[int, tuple[Source, list[RawMessage]]] = {}
        for m in messages:
            owner = self._owner[m.source]
            by_source.setdefault(id(owner), (owner, []))[1].append(m)
        for owner, owned in by_source.values():
            owner.commit(owned)

    def total(self) -> int | None:
        totals = [s.total() for s in self.sources]
        return None if any(t is None for t in totals) else sum(totals)  # type: ignore[misc]

    def close(self) -> None:
        for s in self.sources:
            s.close()


def archives(source: Source) -> list[ArchiveSource]:
    """The archives a source reads (itself, or those of a :class:`MultiSource`)."""
    parts = source.sources if isinstance(source, MultiSource) else [source]
    return [s for s in parts if isinstance(s, ArchiveSource)]


def _open_one(src: str, settings: Settings, local: bool) -> Source:
    if src.startswith("kafka://"):
        return KafkaBatches(settings, src)
    if src == "sim" or (not src and not SHARED_ZTF.exists()):
        paths = simulated_night(settings)
        if len(paths) == 1:
            return ArchiveSource(paths[0], settings.batch_size, local)
        return MultiSource([ArchiveSource(p, settings.batch_size, local) for p in paths])
    return ArchiveSource(resolve_archive(src, settings.night), settings.batch_size, local)


def open_source(settings: Settings) -> Source:
    """The run's source: one, or several read side by side (``--source`` given more than once, or ``;``)."""
    local = not settings.scheduler  # a LocalCluster's workers share the driver's disk: they read the files
    sources = [_open_one(src, settings, local) for src in settings.sources]
    return sources[0] if len(sources) == 1 else MultiSource(sources)
