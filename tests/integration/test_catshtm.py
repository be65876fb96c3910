"""catsHTM catalogues (the shared AKARI and ROSAT FSC samples, real catsHTM files) read, imported and matched.

The reading is checked against the file's own geometry, independently of the reader: every source must lie in
the spherical triangle of the HTM trixel it is stored under (the index's three poles), which only holds when the
columns are not transposed and the radians became degrees."""

from __future__ import annotations

import argparse
import json
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest

from alert_broker.features.xmatch import crossmatch, unit_vectors
from alert_broker.pipeline import catalog_cli
from alert_broker.storage.catalogs import Catalog, read_table
from alert_broker.storage.catshtm import describe, is_catshtm

pytestmark = pytest.mark.integration

SAMPLES = {
    "AKARI": 950,
    "ROSATfsc": 703,
}  # sources in the sample's data files (the index lists 870,973 / 105,924)


def _sample(shared_data, name: str):
    return shared_data / "catalogs" / "catsHTM_sample" / name


def _trixel_of_each_row(folder, name: str) -> np.ndarray:
    """The trixel index each stored row belongs to, in the reader's order (sorted files, sorted datasets)."""
    out = []
    for file in sorted(folder.glob(f"{name}_htm_*.hdf5")):
        with h5py.File(file, "r") as f:
            for key in sorted(k for k in f if not k.endswith("_Ind")):
                out += [int(key.split("_")[1])] * f[key].shape[1]
    return np.asarray(out)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_source_lies_in_its_trixel(shared_data, name):
    folder = _sample(shared_data, name)
    assert is_catshtm(folder) and not is_catshtm(folder.parent)
    info = describe(folder)
    assert info.name == name and info.columns[:2] == ["RA", "Dec"] and info.units[:2] == ["rad", "rad"]
    assert len(set(info.columns)) == len(info.columns)
    assert info.listed == {"AKARI": 870_973, "ROSATfsc": 105_924}[name]
    table = read_table(folder)
    assert len(table) == SAMPLES[name] and list(table.columns) == info.columns
    assert table["RA"].between(0, 360).all() and table["Dec"].between(-90, 90).all()
    trixel = _trixel_of_each_row(folder, name)
    with h5py.File(folder / f"{name}_htm.hdf5", "r") as f:
        index = f[f"{name}_HTM"][...]
    poles = [unit_vectors(np.degrees(index[6 + 2 * k, trixel - 1]), np.degrees(index[7 + 2 * k, trixel - 1]))
             for k in range(3)]  # fmt: skip
    p = unit_vectors(table["RA"], table["Dec"])
    for a, b in ((0, 1), (1, 2), (2, 0)):  # on the inner side of each edge's great circle
        assert (np.einsum("ij,ij->i", np.cross(poles[a], poles[b]), p) >= -1e-9).all(), (name, a, b)
    # columns chosen by name; an unknown one is a clear error
    assert list(read_table(folder, ["Dec", info.columns[-1]]).columns) == ["Dec", info.columns[-1]]
    with pytest.raises(ValueError, match="no column nope"):
        read_table(folder, ["nope"])


def test_akari_names_its_position_errors_again_and_they_get_their_column_numbers(shared_data):
    info = describe(_sample(shared_data, "AKARI"))
    assert info.columns[:4] == ["RA", "Dec", "RA_3", "Dec_4"] and info.units[2:4] == ["arcsec", "arcsec"]


def test_a_trixel_cut_short_is_refused(shared_data, tmp_path):
    folder = tmp_path / "ROSATfsc"
    shutil.copytree(_sample(shared_data, "ROSATfsc"), folder)
    for f in folder.iterdir():
        f.chmod(0o644)
    data = next(folder.glob("ROSATfsc_htm_0*.hdf5"))
    with h5py.File(data, "r+") as f:
        key = sorted(k for k in f if not k.endswith("_Ind"))[0]
        rows = f[key][...]
        del f[key]
        f[key] = rows[:, :-1]
    with pytest.raises(
        ValueError, match=f"{key}: {rows.shape[1] - 1} sources, the index lists {rows.shape[1]}"
    ):
        read_table(folder)


def test_import_through_the_cli_and_match_the_sources(shared_data, tmp_path):
    parser = argparse.ArgumentParser(prog="broker")
    catalog_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["catalog", "import", "rosat", str(_sample(shared_data, "ROSATfsc")), "--ra", "RA",
                              "--dec", "Dec", "--columns", "CountRate", "Reliability", "--root", str(tmp_path)])  # fmt: skip
    assert catalog_cli.run(args) == 0
    cat = Catalog(tmp_path, "rosat")
    assert cat.info.total_rows == SAMPLES["ROSATfsc"]
    table = read_table(_sample(shared_data, "ROSATfsc"))
    picked = table.iloc[[0, 100, 702]]
    objects = pd.DataFrame({"oid": ["a", "b", "c"], "meanra": picked["RA"].to_numpy() + 1e-5,
                            "meandec": picked["Dec"].to_numpy()})  # fmt: skip
    xm = crossmatch(objects, cat, 15.0, ["CountRate", "Reliability"])
    assert xm["oid"].tolist() == ["a", "b", "c"] and (xm["dist_arcsec"] < 0.05).all()
    props = [json.loads(p) for p in xm["properties"]]
    assert [p["CountRate"] for p in props] == pytest.approx(picked["CountRate"].tolist())
