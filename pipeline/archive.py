"""Night archives as a message source: a folder of .avro files, or a .tar.gz / .tgz of them.

An archive is replayed exactly like a Kafka partition: ``source = "archive:<name>"``, partition 0, and the
offset is each packet's position in a fixed order, so re-running a night gives the same batches and the same
batch ids. The order is:

- a folder: every ``*.avro`` file below it, recursively, sorted by relative POSIX path (a directory listing
  has no stable order of its own);
- a tarball: the order of its members. A tarball's bytes fix that order once and for all, and reading it
  in any other order would mean holding or re-decompressing the whole archive (ZTF's nightly public
  tarballs are tens of GB and are not name-sorted), so members are streamed with ``tarfile`` in one pass,
  never extracted to disk. A tarball packed in sorted order (``tar --sort=name``, or ``tarfile`` adding the
  files in sorted order) therefore yields exactly the messages of the folder it was made from.

Only regular files whose name ends in ``.avro`` (any case) are packets; everything else (README files,
JPEG cut-outs, text tables, directories, links) is ignored, not dead-lettered: it was never a packet.
The archive's name drops a ``.tar.gz`` / ``.tgz`` suffix, so a folder and its tarball share a source name
and their batches the same ids.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from alert_broker.surveys.messages import RawMessage

_TAR_SUFFIXES = (".tar.gz", ".tgz")


def is_tarball(path: str | Path) -> bool:
    return str(path).lower().endswith(_TAR_SUFFIXES)


def archive_source(path: str | Path) -> str:
    """The stable source name of an archive: ``archive:<basename without .tar.gz/.tgz>``."""
    name = Path(path).name
    for suffix in _TAR_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return f"archive:{name}"


def _is_packet_name(name: str) -> bool:
    return name.lower().endswith(".avro")


def _member_key(name: str) -> str:
    """A tar member's relative path, without the ``./`` that ``tar -C dir .`` puts in front."""
    while name.startswith("./"):
        name = name[2:]
    return name


def _folder_files(root: Path) -> list[tuple[str, Path]]:
    files = [
        (p.relative_to(root).as_posix(), p)
        for p in root.rglob("*")
        if _is_packet_name(p.name) and p.is_file()
    ]
    files.sort(key=lambda kp: kp[0])
    return files


def _iter_tar(path: Path) -> Iterator[tuple[str, bytes]]:
    # "r|gz" is tarfile's streaming mode: one forward pass over the gzip stream, no seeking, no temp files.
    with tarfile.open(path, mode="r|gz") as tar:
        for member in tar:
            if member.isfile() and _is_packet_name(member.name):
                fileobj = tar.extractfile(member)
                assert fileobj is not None  # regular files always have one
                yield _member_key(member.name), fileobj.read()
            # tarfile keeps every member it has read in ``tar.members``, even when streaming: ~0.7 kB each,
            # 0.2 GB of the driver's memory per 300,000 alerts of a night's tarball. Nothing here looks back.
            tar.members = []


def _iter_packets(path: Path) -> Iterator[tuple[str, bytes | Path]]:
    """(key, payload) in offset order: a folder's payloads as paths (read only when needed), a tarball's bytes."""
    if path.is_dir():
        yield from _folder_files(path)
    elif path.is_file() and is_tarball(path):
        yield from _iter_tar(path)
    elif path.exists():
        raise ValueError(f"{path} is neither a folder nor a .tar.gz/.tgz archive of .avro files")
    else:
        raise FileNotFoundError(f"archive {path} does not exist")


def iter_archive(
    path: str | Path, batch_size: int, lazy: bool = False, skip: Sequence[tuple[int, int]] = ()
) -> Iterator[list[RawMessage]]:
    """Yield the archive's packets as lists of at most ``batch_size`` RawMessages, in offset order.

    ``skip``: inclusive offset ranges not to yield (a resumed run: the batches an earlier run committed). A batch
    never spans a skipped range, so its offsets ``first..last`` overlap no committed batch's in the manifest.

    ``key`` is the packet's path relative to the archive root, so a dead letter names the file to look at.
    Non-.avro files and tar members are ignored (see the module docstring). ``lazy=True`` (folders only)
    leaves each payload on disk (``RawMessage.path``) for the worker that decodes it to read
    (``RawMessage.loaded()``): the driver then never touches the bytes, which is what lets a local cluster
    scale with its workers. Use it only when the workers see the same filesystem.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    path = Path(os.fspath(path))
    source = archive_source(path)
    batch: list[RawMessage] = []
    # a folder's files are read only once known not skipped (and, lazily, by the workers)
    packets = _iter_packets(path)
    skipped = _Skipper(skip)
    for offset, (key, data) in enumerate(packets):
        if skipped(offset):
            if batch:
                yield batch
                batch = []
            continue
        if isinstance(data, Path) and not lazy:
            data = data.read_bytes()
        if isinstance(data, Path):
            msg = RawMessage(source=source, partition=0, offset=offset, payload=b"", key=key, path=str(data))
        else:
            msg = RawMessage(source=source, partition=0, offset=offset, payload=data, key=key)
        batch.append(msg)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Skipper:
    """``skipper(offset)``: whether ``offset`` is in one of the ranges, asked in increasing offset order."""

    def __init__(self, ranges: Sequence[tuple[int, int]]) -> None:
        self._ranges = sorted((int(a), int(b)) for a, b in ranges)
        self._i = 0

    def __call__(self, offset: int) -> bool:
        while self._i < len(self._ranges) and self._ranges[self._i][1] < offset:
            self._i += 1
        return self._i < len(self._ranges) and self._ranges[self._i][0] <= offset


def archive_keys(path: str | Path) -> Iterator[str]:
    """The packets' keys (``RawMessage.key``) in offset order, without reading a packet.

    Free for a folder; a tarball has no index, so this reads its member headers in one streamed pass (the
    gzip stream is decompressed, the member contents are skipped, nothing is written to disk).
    """
    path = Path(os.fspath(path))
    if path.is_dir():
        yield from (key for key, _ in _folder_files(path))
    elif path.is_file() and is_tarball(path):
        with tarfile.open(path, mode="r|gz") as tar:
            for m in tar:
                if m.isfile() and _is_packet_name(m.name):
                    yield _member_key(m.name)
                tar.members = []  # as in _iter_tar: do not keep a million headers
    elif path.exists():
        raise ValueError(f"{path} is neither a folder nor a .tar.gz/.tgz archive of .avro files")
    else:
        raise FileNotFoundError(f"archive {path} does not exist")


def count_archive(path: str | Path) -> int:
    """Number of packets ``iter_archive`` will yield (for a progress bar; a tarball's headers are read)."""
    return sum(1 for _ in archive_keys(path))


def keys_digest(keys: Iterable[str]) -> str:
    """A digest of packet keys in order (SHA-256 of the keys, each followed by a newline; 32 hex digits): what
    the batch manifest keeps of the files an archive batch read, so that ``--resume`` can tell that the offsets
    an earlier run committed still name the same files."""
    h = hashlib.sha256()
    for key in keys:
        h.update(key.encode("utf-8", "surrogateescape"))
        h.update(b"\n")
    return h.hexdigest()[:32]


def changed_ranges(
    path: str | Path, digests: Sequence[tuple[int, int, str]]
) -> tuple[int, list[tuple[int, int]]]:
    """(packets in the archive, the ranges of ``digests`` — ``(first, last, keys_digest)`` of committed batches —
    whose keys today digest otherwise or that reach past its end), in one pass over the keys. Committed batches
    never overlap (the manifest retires a batch that a later one overlaps); if they did, the later would be
    reported changed, never passed unchecked."""
    todo = sorted((int(a), int(b), d) for a, b, d in digests)
    changed: list[tuple[int, int]] = []
    i, h, n = 0, None, 0
    for offset, key in enumerate(archive_keys(path)):
        n = offset + 1
        if i < len(todo) and todo[i][0] <= offset:
            if h is None:
                h = []
            h.append(key)
            if offset == todo[i][1]:
                if keys_digest(h) != todo[i][2]:
                    changed.append(todo[i][:2])
                h, i = None, i + 1
    changed += [(a, b) for a, b, _ in todo[i:]]  # ranges the archive no longer reaches
    return n, changed
