"""Lake compaction's pure parts: which files are compacted ones, where a file sits, the CLI's refusals."""

from __future__ import annotations

import pytest

from alert_broker.pipeline.cli import main
from alert_broker.storage import compaction
from alert_broker.storage.lake import Lake


def test_compacted_files_are_told_apart_from_batch_files():
    assert compaction.is_compacted("/l/detections/alert_night=20210301/compacted-0123456789abcdef.parquet")
    assert compaction.is_compacted("s3://b/l/alerts/night=20210301/compacted-0123456789abcdef.parquet")
    assert not compaction.is_compacted("/l/alerts/night=20210301/ztf-p0o0-99-r000.parquet")
    # only the start of the name counts
    assert not compaction.is_compacted("/l/alerts/night=20210301/batch-compacted-x.parquet")


def test_only_files_directly_in_a_night_folder_of_a_table_are_candidates(tmp_path):
    lake = Lake(str(tmp_path))
    root = lake.root
    assert compaction._table_of(lake, f"{root}/alerts/night=20210301/b-r000.parquet") == (
        "alerts",
        f"{root}/alerts/night=20210301",
    )
    assert compaction._table_of(lake, f"{root}/dead_letters/b.parquet") is None  # no night folder
    assert compaction._table_of(lake, f"{root}/history/detections/Norder=4/deltas/b-r000.parquet") is None
    assert compaction._table_of(lake, f"{root}/objects_current/dataset/Norder=0/Dir=0/Npix=3.parquet") is None


def test_staged_names_are_hidden_from_readers():
    target = "/l/alerts/night=20210301/compacted-0123456789abcdef.parquet"
    staged = compaction._staged(target)
    assert staged.rsplit("/", 1)[0] == target.rsplit("/", 1)[0]
    assert staged.rsplit("/", 1)[1].startswith(".")  # Lake.list_files, pyarrow and dask skip dot-names


@pytest.mark.parametrize(
    ("action", "table", "message"),
    [
        ("compact", "nope", "compact: unknown table(s) nope"),
        ("publish", "detections", "publish: unknown table"),
    ],
)
def test_the_cli_refuses_unknown_tables_before_touching_anything(tmp_path, capsys, action, table, message):
    out = tmp_path / "out"
    assert (
        main(["lake", action, "--table", table, "--out", str(out), "--pg-dsn", "postgresql://nowhere/x"]) == 2
    )
    assert message in capsys.readouterr().err
    assert not (out / "lake").exists()
