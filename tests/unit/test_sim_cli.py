"""`broker simulate`: the sub-command's options, folder and tarball outputs, the truth table, bad input."""

from __future__ import annotations

import argparse
import io
import tarfile

import fastavro
import pandas as pd
import pytest

from alert_broker.simulator.cli import register, run


def _parse(argv):
    parser = argparse.ArgumentParser(prog="broker")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    return parser.parse_args(argv)


def test_register_adds_the_documented_options():
    a = _parse(
        [
            "simulate",
            "--survey",
            "lsst",
            "--nights",
            "3",
            "--objects",
            "50",
            "--seed",
            "7",
            "--out",
            "kafka://h:9092/t",
            "--rate",
            "350",
            "--burst",
            "10000",
            "--start-mjd",
            "61000.2",
            "--tar",
        ]
    )
    assert (a.survey, a.nights, a.objects, a.seed, a.out, a.rate, a.burst, a.start_mjd, a.tar) == (
        "lsst",
        3,
        50,
        7,
        "kafka://h:9092/t",
        350.0,
        10000,
        61000.2,
        True,
    )
    assert a.func is run
    with pytest.raises(SystemExit):
        _parse(["simulate", "--survey", "atlas", "--out", "x"])


def test_folder_output_and_truth(tmp_path, capsys):
    out = tmp_path / "night"
    assert (
        run(_parse(["simulate", "--objects", "400", "--nights", "1", "--seed", "3", "--out", str(out)])) == 0
    )
    files = sorted(out.glob("night=*/*.avro"))
    assert len(files) > 20
    assert "alerts/s" in capsys.readouterr().out
    truth = pd.read_parquet(out / "truth.parquet")
    assert len(truth) == 400 and truth["n_alerts"].sum() == len(files)
    for f in files[:20]:
        with open(f, "rb") as fh:
            rec = next(fastavro.reader(fh))
        assert f.stem == str(rec["candid"]) and f.parent.name.startswith("night=")
        assert rec["objectId"] in set(truth["oid"])


def test_tarball_output_holds_the_same_alerts(tmp_path):
    folder, tars = tmp_path / "folder", tmp_path / "tars"
    assert (
        run(_parse(["simulate", "--objects", "300", "--nights", "2", "--seed", "4", "--out", str(folder)]))
        == 0
    )
    assert (
        run(
            _parse(
                ["simulate", "--objects", "300", "--nights", "2", "--seed", "4", "--out", str(tars), "--tar"]
            )
        )
        == 0
    )
    balls = sorted(tars.glob("ztf_public_*.tar.gz"))
    assert balls and not list(tars.glob(".spool*"))
    for ball in balls:
        night = ball.name.split("_")[-1].split(".")[0]
        with tarfile.open(ball) as tf:
            members = {m.name: tf.extractfile(m).read() for m in tf.getmembers()}
        on_disk = {p.name: p.read_bytes() for p in (folder / f"night={night}").glob("*.avro")}
        assert members == on_disk
        assert all(len(list(fastavro.reader(io.BytesIO(b)))) == 1 for b in list(members.values())[:5])


def test_bad_input_is_a_clear_error(tmp_path, capsys):
    assert run(_parse(["simulate", "--nights", "0", "--out", str(tmp_path)])) == 2
    assert "nights must be >= 1" in capsys.readouterr().err
    assert run(_parse(["simulate", "--objects", "10", "--out", "kafka://only-host"])) == 2
    assert "kafka://host:port/topic" in capsys.readouterr().err


def test_fields_sets_the_pointings(tmp_path, capsys):
    """`--fields N` places the objects on N pointings (the default for 400 objects is the minimum of 40), so a
    small calibration run can share a big night's pointings and with them its revisits."""
    base = ["simulate", "--objects", "400", "--nights", "1", "--seed", "3", "--no-stamps"]
    assert run(_parse([*base, "--out", str(tmp_path / "few"), "--fields", "5"])) == 0
    assert run(_parse([*base, "--out", str(tmp_path / "default")])) == 0
    few = pd.read_parquet(tmp_path / "few" / "truth.parquet")["field"]
    default = pd.read_parquet(tmp_path / "default" / "truth.parquet")["field"]
    assert few.nunique() <= 5 < default.nunique()
    assert run(_parse([*base, "--out", str(tmp_path / "bad"), "--fields", "0"])) == 2
    assert "n_fields (pointings) must be >= 1" in capsys.readouterr().err
