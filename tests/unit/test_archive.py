"""Night archives as a message source: folder and .tar.gz give the same replayable messages."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from alert_broker.pipeline.archive import archive_source, count_archive, iter_archive
from alert_broker.surveys.messages import RawMessage


def make_folder(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def make_tarball(path: Path, folder: Path, prefix: str = "") -> Path:
    """A .tar.gz of ``folder`` with members added in sorted order (as ``tar --sort=name`` would)."""
    with tarfile.open(path, "w:gz") as tar:
        for file in sorted(folder.rglob("*"), key=lambda p: p.relative_to(folder).as_posix()):
            tar.add(file, arcname=prefix + file.relative_to(folder).as_posix(), recursive=False)
    return path


def messages(path: Path, batch_size: int = 1000) -> list[RawMessage]:
    return [m for batch in iter_archive(path, batch_size) for m in batch]


FILES = {
    "b/2.avro": b"two",
    "a.avro": b"one",
    "b/10.avro": b"ten",
    "c/deep/x.AVRO": b"upper-case suffix",
    "README.md": b"not a packet",
    "b/stamp.jpg": b"\xff\xd8\xff",
}


def test_folder_sorted_recursive_and_ignores_non_avro(tmp_path):
    folder = make_folder(tmp_path / "night_20200101", FILES)
    msgs = messages(folder)
    # Sorted by relative POSIX path, so "b/10.avro" < "b/2.avro" (string order, stable across machines).
    assert [m.key for m in msgs] == ["a.avro", "b/10.avro", "b/2.avro", "c/deep/x.AVRO"]
    assert [m.offset for m in msgs] == [0, 1, 2, 3]
    assert [m.payload for m in msgs] == [b"one", b"ten", b"two", b"upper-case suffix"]
    assert {m.source for m in msgs} == {"archive:night_20200101"}
    assert {m.partition for m in msgs} == {0}
    assert count_archive(folder) == 4


def test_batches_are_contiguous_and_bounded(tmp_path):
    folder = make_folder(tmp_path / "n", {f"{i:03d}.avro": bytes([i]) for i in range(10)})
    batches = list(iter_archive(folder, 4))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert [[m.offset for m in b] for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    with pytest.raises(ValueError, match="batch_size"):
        list(iter_archive(folder, 0))


@pytest.mark.parametrize("suffix", [".tar.gz", ".tgz"])
def test_tarball_equals_folder(tmp_path, suffix):
    folder = make_folder(tmp_path / "night_20200101", FILES)
    tarball = make_tarball(tmp_path / f"night_20200101{suffix}", folder)
    assert messages(tarball) == messages(folder)
    assert count_archive(tarball) == count_archive(folder) == 4
    assert archive_source(tarball) == archive_source(folder) == "archive:night_20200101"


def test_tarball_dot_slash_members_and_member_order(tmp_path):
    # `tar -C dir -czf x.tgz .` writes "./a.avro"; keys drop the "./". A tarball's own member order is kept
    # (see pipeline/archive.py for why): here members are added in reverse.
    tarball = tmp_path / "night.tgz"
    with tarfile.open(tarball, "w:gz") as tar:
        for name, data in [("./z.avro", b"z"), ("./notes.txt", b"n"), ("./a.avro", b"a")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    msgs = messages(tarball)
    assert [(m.key, m.offset, m.payload) for m in msgs] == [("z.avro", 0, b"z"), ("a.avro", 1, b"a")]
    assert msgs[0].source == "archive:night"


def test_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError):
        list(iter_archive(tmp_path / "missing", 10))
    not_archive = tmp_path / "x.zip"
    not_archive.write_bytes(b"PK")
    with pytest.raises(ValueError, match="neither a folder"):
        list(iter_archive(not_archive, 10))
    with pytest.raises(ValueError, match="neither a folder"):
        count_archive(not_archive)


def test_real_alerts_folder_and_tarball_identical(shared_data, tmp_path):
    """Real ZTF packets: a folder and a sorted .tar.gz of it give the same messages, offsets and keys."""
    src = shared_data / "ztf" / "object_sequences" / "ZTF19abaejrh"
    files = {p.name: p.read_bytes() for p in sorted(src.glob("*.avro"))}
    folder = make_folder(
        tmp_path / "ZTF19abaejrh", {**{f"alerts/{k}": v for k, v in files.items()}, "notes.txt": b"x"}
    )
    tarball = make_tarball(tmp_path / "ZTF19abaejrh.tar.gz", folder)
    from_folder, from_tar = messages(folder, 5), messages(tarball, 5)
    assert from_tar == from_folder
    assert len(from_folder) == len(files) == 12
    assert [m.key for m in from_folder] == [f"alerts/{k}" for k in sorted(files)]
    assert all(m.payload == files[m.key.split("/")[1]] for m in from_folder)
    assert [len(b) for b in iter_archive(tarball, 5)] == [5, 5, 2]


def test_prototype_tarball_has_no_packets(shared_data):
    """ZTF's 2016 prototype tarball holds JPEG cut-outs and text only: an archive with nothing to ingest."""
    (tarball,) = (shared_data / "ztf" / "bad" / "prototype_2016").glob("*.tar.gz")
    assert count_archive(tarball) == 0
    assert list(iter_archive(tarball, 10)) == []


def test_a_tarball_is_streamed_without_keeping_the_members_it_has_read(tmp_path, monkeypatch):
    """tarfile appends every member it reads to ``members``, streaming or not: a night's tarball of 10^6 alerts
    grew the driver by ~0.2 GB per 300,000. The reader lets them go as it goes."""
    from alert_broker.pipeline import archive

    path = tmp_path / "night.tar.gz"
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for i in range(50):
            info = tarfile.TarInfo(f"{i:04d}.avro")
            info.size = 3
            tar.addfile(info, io.BytesIO(b"abc"))
    opened: list[tarfile.TarFile] = []
    real_open = tarfile.open

    def spy(*args, **kwargs):
        opened.append(real_open(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(archive.tarfile, "open", spy)
    kept = []
    for _, payload in archive._iter_tar(path):
        assert payload == b"abc"
        kept.append(len(opened[0].members))
    assert len(kept) == 50 and max(kept) <= 1


@pytest.mark.parametrize("lazy", [False, True])
def test_skipped_ranges_are_not_read_and_no_batch_spans_one(tmp_path, lazy):
    """A resumed run skips what an earlier run committed; a batch stops at a skipped range, so its first..last
    offsets overlap no committed batch (the manifest would retire that batch's files otherwise)."""
    folder = make_folder(tmp_path / "n", {f"{i:03d}.avro": bytes([i]) for i in range(12)})
    (folder / "003.avro").unlink()  # offsets: 0..10 over the 11 files left
    (folder / "004.avro").write_bytes(b"")  # skipped below: never read, so an empty file does not matter
    batches = list(iter_archive(folder, 4, lazy=lazy, skip=[(3, 4), (8, 8)]))
    assert [[m.offset for m in b] for b in batches] == [[0, 1, 2], [5, 6, 7], [9, 10]]
    got = [m.loaded().payload if lazy else m.payload for b in batches for m in b]
    assert got == [bytes([i]) for i in (0, 1, 2, 6, 7, 8, 10, 11)]
    tarball = make_tarball(tmp_path / "n.tar.gz", folder)
    assert list(iter_archive(tarball, 4, skip=[(3, 4), (8, 8)])) == list(
        iter_archive(folder, 4, skip=[(3, 4), (8, 8)])
    )
    assert list(iter_archive(folder, 4, skip=[(0, 10)])) == []


def test_resume_skips_the_committed_offsets_and_refuses_an_archive_they_do_not_fit(tmp_path):
    from alert_broker.pipeline.sources import ArchiveSource, ResumeRefused

    folder = make_folder(tmp_path / "n", {f"{i:03d}.avro": bytes([i]) for i in range(10)})
    src = ArchiveSource(folder, batch_size=3)
    assert src.resume([]) == 0 and src.total() == 10
    assert src.resume([(0, 5), (8, 8)]) == 7
    assert src.total() == 3
    assert [[m.offset for m in b] for b in src.batches()] == [[6, 7], [9]]
    with pytest.raises(ResumeRefused, match="holds 10 packets, so it is not the archive"):
        ArchiveSource(folder, batch_size=3).resume([(0, 10)])


def test_resume_refuses_an_archive_whose_files_changed_under_the_committed_offsets(tmp_path):
    """The manifest keeps a digest of each committed batch's file names; a folder with a file added, removed or
    renamed before the committed offsets is refused (skipping them would skip other files), one with files added
    after them is resumed, and the tarball of the same folder matches the folder's digests."""
    from alert_broker.pipeline.archive import changed_ranges, keys_digest
    from alert_broker.pipeline.driver import archive_digests
    from alert_broker.pipeline.sources import ArchiveSource, ResumeRefused

    folder = make_folder(tmp_path / "n", {f"{i:03d}.avro": bytes([i]) for i in range(10)})
    first_run = list(iter_archive(folder, 3))
    digests = [
        (b[0].offset, b[-1].offset, archive_digests(b)["archive:n"][0]) for b in first_run[:2]
    ]  # batches 0-2 and 3-5 committed
    assert digests[0][2] == keys_digest(["000.avro", "001.avro", "002.avro"])
    committed = [(0, 5)]
    assert ArchiveSource(folder, 3).resume(committed, digests) == 6
    assert changed_ranges(folder, digests) == (10, [])
    tarball = make_tarball(tmp_path / "n.tar.gz", folder)
    assert changed_ranges(tarball, digests) == (10, [])

    (folder / "zzz.avro").write_bytes(b"x")  # added after the committed offsets: still the same files there
    src = ArchiveSource(folder, 3)
    assert src.resume(committed, digests) == 6
    assert [[m.key for m in b] for b in src.batches()] == [
        ["006.avro", "007.avro", "008.avro"],
        ["009.avro", "zzz.avro"],
    ]

    (folder / "004a.avro").write_bytes(b"y")  # inserted in the middle: offsets 5.. now name other files
    with pytest.raises(ResumeRefused, match=r"offsets 3-5 .* \(1 of 2 committed batches differ"):
        ArchiveSource(folder, 3).resume(committed, digests)
    (folder / "004a.avro").unlink()
    (folder / "001.avro").rename(folder / "001b.avro")  # renamed: same count, other names
    assert changed_ranges(folder, digests) == (11, [(0, 2)])
    with pytest.raises(ResumeRefused, match="offsets 0-2"):
        ArchiveSource(folder, 3).resume(committed, digests)
    # a range the archive no longer reaches is changed too, and without digests (an older manifest) only the
    # count is checked
    assert changed_ranges(folder, [(8, 12, "0" * 32)]) == (11, [(8, 12)])
    assert ArchiveSource(folder, 3).resume(committed) == 6


def test_archive_digests_cover_contiguous_archive_ranges_only():
    from alert_broker.pipeline.archive import keys_digest
    from alert_broker.pipeline.driver import archive_digests

    def msg(source, offset, key="k"):
        return RawMessage(source=source, partition=0, offset=offset, payload=b"", key=f"{key}{offset}")

    batch = [
        msg("archive:n", 5),
        msg("archive:n", 4),
        msg("ztf-topic", 7),
        msg("archive:m", 1),
        msg("archive:m", 3),
    ]
    assert archive_digests(batch) == {"archive:n": {0: keys_digest(["k4", "k5"])}}  # m has a gap, Kafka none
    assert keys_digest(["a", "b"]) != keys_digest(["ab"]) != keys_digest(["b", "a"])
