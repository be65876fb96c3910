"""Choosing what a night reads: SOURCE and NIGHT resolution, and the kinds of source."""

from __future__ import annotations

import pytest

from alert_broker.pipeline.config import load_settings
from alert_broker.pipeline.sources import ArchiveSource, KafkaBatches, open_source, resolve_archive


def test_night_selects_inside_a_folder(tmp_path):
    (tmp_path / "night=20200101").mkdir()
    (tmp_path / "20200102").mkdir()
    (tmp_path / "ztf_public_20200103.tar.gz").write_bytes(b"")
    assert resolve_archive(str(tmp_path), "20200101") == tmp_path / "night=20200101"
    assert resolve_archive(str(tmp_path), "20200102") == tmp_path / "20200102"
    assert resolve_archive(str(tmp_path), "20200103") == tmp_path / "ztf_public_20200103.tar.gz"
    assert resolve_archive(str(tmp_path), "") == tmp_path
    assert resolve_archive(str(tmp_path), "20991231") == tmp_path  # a label only


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="source not found"):
        resolve_archive(str(tmp_path / "nope"), "")


def test_open_source_kinds(tmp_path):
    s = load_settings(env={}, overrides={"source": str(tmp_path)})
    src = open_source(s)
    assert isinstance(src, ArchiveSource) and src.read_on_workers  # LocalCluster: workers read the files
    assert src.name == f"archive:{tmp_path.name}"
    s = load_settings(env={}, overrides={"source": str(tmp_path), "scheduler": "tcp://x:8786"})
    assert not open_source(s).read_on_workers  # remote workers may not see this disk: ship the bytes
    with pytest.raises(ValueError, match="no topic"):
        open_source(load_settings(env={}, overrides={"source": "kafka://127.0.0.1:1/"}))
    assert KafkaBatches is not None
