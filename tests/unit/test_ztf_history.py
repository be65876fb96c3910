"""ZTF history taken as columns (surveys.ztf_history) gives exactly the tables, dead letters and raw rows of the
dict path, on every real ZTF set and on alerts whose history breaks each rule."""

from __future__ import annotations

import io
from pathlib import Path

import fastavro
import numpy as np
import pandas as pd
import pytest

from alert_broker.features.tables import TABLE_NAMES
from alert_broker.surveys import ztf
from alert_broker.surveys.decode import decode_batch, read_packet
from alert_broker.surveys.messages import RawMessage


def _messages(folder: Path) -> list[RawMessage]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return [RawMessage("t", 0, i, p.read_bytes(), p.name) for i, p in enumerate(files)]


def _both(msgs: list[RawMessage], monkeypatch) -> tuple:
    with monkeypatch.context() as m:
        m.setattr(ztf, "COLUMNAR_HISTORY", False)
        dicts = decode_batch(msgs, "b")
    return dicts, decode_batch(msgs, "b")


def _assert_same(dicts, columns) -> None:
    for name in TABLE_NAMES:
        pd.testing.assert_frame_equal(
            getattr(columns.tables, name), getattr(dicts.tables, name), check_exact=True
        )
    assert [(d.offset, d.reason, d.error) for d in columns.dead] == [
        (d.offset, d.reason, d.error) for d in dicts.dead
    ]
    pd.testing.assert_frame_equal(columns.raw.drop(columns="payload"), dicts.raw.drop(columns="payload"))
    for a, b in zip(columns.raw["payload"], dicts.raw["payload"], strict=True):  # a re-encoded record's
        assert a == b or _records(a) == _records(b)  # container has a random sync marker


def _records(payload: bytes) -> list[dict]:
    return list(fastavro.reader(io.BytesIO(payload)))


def _columnar_share(msgs: list[RawMessage], field: str = "prv_candidates") -> float:
    """The share of alerts with a history (or forced photometry) whose entries were taken as columns."""
    taken = seen = 0
    for m in msgs:
        try:
            container = read_packet(m.payload, columnar=True)
        except Exception:
            continue
        if container.schema.adapter.info.name != "ztf":
            continue
        for record in container.records:
            if not record.get(field):
                continue
            seen += 1
            try:
                alert = ztf.extract_alert(record, container.schema.info)
            except Exception:
                continue
            taken += (alert.history if field == "prv_candidates" else alert.fp_history) is not None
    return taken / max(seen, 1)


@pytest.mark.parametrize(
    "folder", ["fink_sample_1166", "alerce_samples_snappy", "object_sequences", "old_versions", "forced_photometry",
               "simbad_labelled", "bad"]
)  # fmt: skip
def test_real_sets_give_the_same_tables_either_way(shared_data, monkeypatch, folder):
    msgs = _messages(shared_data / "ztf" / folder)
    dicts, columns = _both(msgs, monkeypatch)
    _assert_same(dicts, columns)
    if folder in ("fink_sample_1166", "object_sequences"):
        assert _columnar_share(msgs) > 0.9  # the fast way is the usual one
        assert len(columns.tables.detections) > 500


def _rewrite(
    payload: bytes, change, long_nid: bool = False, field: str = "prv_candidates", null_items: bool = False
) -> bytes:
    """The packet with ``change(record[field])`` applied to its one record, re-encoded with its schema
    (``long_nid``: with the history entries' ``nid`` a long; ``null_items``: with ``field``'s items nullable)."""
    reader = fastavro.reader(io.BytesIO(payload))
    schema = reader.writer_schema
    record = next(iter(reader))
    if null_items:
        array = next(f for f in schema["fields"] if f["name"] == field)
        array = (
            next(t for t in array["type"] if isinstance(t, dict))
            if isinstance(array["type"], list)
            else array["type"]
        )
        array["items"] = [array["items"], "null"]
    if long_nid:
        prv = next(f for f in schema["fields"] if f["name"] == "prv_candidates")
        items = prv["type"][0]["items"] if isinstance(prv["type"], list) else prv["type"]["items"]
        item = items[0] if isinstance(items, list) else items
        next(f for f in item["fields"] if f["name"] == "nid")["type"] = ["long", "null"]
    change(record[field])
    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(schema), [record])
    return out.getvalue()


def _first(kind: str):
    """A change to the first detection (candid set) or non-detection (candid null) of a history."""

    def pick(prv: list[dict]) -> dict:
        return next(p for p in prv if (p["candid"] is None) == (kind == "nd"))

    return pick


_CHANGES = {
    "a null jd": lambda prv: (
        prv[0].update(jd=None) if _nullable(prv, "jd") else prv[0].update(jd=float("nan"))
    ),
    "a NaN jd": lambda prv: prv[0].update(jd=float("nan")),
    "band 4": lambda prv: prv[0].update(fid=4),
    "a null band": lambda prv: prv[0].update(fid=None),
    "a non-detection before ZTF": lambda prv: _first("nd")(prv).update(jd=2450000.5),
    "a limit of 40 mag": lambda prv: _first("nd")(prv).update(diffmaglim=40.0),
    "a null limit": lambda prv: _first("nd")(prv).update(diffmaglim=None),
    "a detection of magnitude 3": lambda prv: _first("det")(prv).update(magpsf=3.0),
    "a NaN magnitude": lambda prv: _first("det")(prv).update(magpsf=float("nan")),
    "a null magnitude": lambda prv: _first("det")(prv).update(magpsf=None),
    "a detection of magnitude 31": lambda prv: _first("det")(prv).update(magpsf=31.0),
    "a detection after 2100": lambda prv: _first("det")(prv).update(jd=2488070.0),
    "a non-detection after 2100": lambda prv: _first("nd")(prv).update(jd=2488070.0),
    "a limit of 4 mag": lambda prv: _first("nd")(prv).update(diffmaglim=4.0),
    "a sigma of 0": lambda prv: _first("det")(prv).update(sigmapsf=0.0),
    "a sigma of 12": lambda prv: _first("det")(prv).update(sigmapsf=12.0),
    "ra -0.5": lambda prv: _first("det")(prv).update(ra=-0.5),
    "dec 90.5": lambda prv: _first("det")(prv).update(dec=90.5),
    "ra 360": lambda prv: _first("det")(prv).update(ra=360.0),
    "dec -91": lambda prv: _first("det")(prv).update(dec=-91.0),
    "isdiffpos x": lambda prv: _first("det")(prv).update(isdiffpos="x"),
    "isdiffpos tt": lambda prv: _first("det")(prv).update(isdiffpos="tt"),
    "isdiffpos 0": lambda prv: _first("det")(prv).update(isdiffpos="0"),
    "a negative candid": lambda prv: _first("det")(prv).update(candid=-5),
    "pid 0": lambda prv: _first("det")(prv).update(pid=0),
    "a null pid": lambda prv: _first("det")(prv).update(pid=None),
    "a null rb": lambda prv: _first("det")(prv).update(rb=None),
    "a null nid": lambda prv: _first("det")(prv).update(nid=None),
    "a big rfid": lambda prv: _first("det")(prv).update(rfid=2**40),
    "a null entry": lambda prv: prv.__setitem__(0, None),
    "a repeated detection": lambda prv: prv.append(dict(_first("det")(prv))),
    "no history": lambda prv: prv.clear(),
    "a non-ASCII programpi": lambda prv: prv[0].update(programpi="Ganz\u00e1"),
}


def _nullable(prv: list[dict], name: str) -> bool:
    return True  # the change is re-encoded by fastavro, which refuses a null for a non-nullable field


@pytest.mark.parametrize("change", sorted(_CHANGES))
def test_alerts_breaking_a_rule_give_the_same_tables_and_reasons(shared_data, monkeypatch, change):
    """Each change breaks (or exercises) one rule on a few real alerts, beside untouched ones in the same batch:
    the dict path's tables, dropped points, reasons and dead letters, whichever way the history went."""
    files = sorted((shared_data / "ztf" / "fink_sample_1166").glob("*.avro"))
    msgs = []
    for i, f in enumerate(files[:60]):
        payload = f.read_bytes()
        if i % 3 == 0:
            try:
                payload = _rewrite(payload, _CHANGES[change])
            except (StopIteration, ValueError, TypeError, IndexError, fastavro.validation.ValidationError):
                continue  # no such entry here, or the schema does not allow the value
        msgs.append(RawMessage("t", 0, i, payload))
    dicts, columns = _both(msgs, monkeypatch)
    _assert_same(dicts, columns)


def test_ints_that_fit_and_do_not_fit_int32_keep_the_dict_paths_dtype(shared_data, monkeypatch):
    """Int32 columns become Int64 when a value needs it, as surveys.columns decides from all values."""
    files = sorted((shared_data / "ztf" / "fink_sample_1166").glob("*.avro"))[:80]
    msgs = [RawMessage("t", 0, i, f.read_bytes()) for i, f in enumerate(files[:40])]
    for f in files[40:]:  # an alert the batch does not hold already
        try:
            big = _rewrite(f.read_bytes(), lambda prv: _first("det")(prv).update(nid=2**33), long_nid=True)
            break
        except StopIteration:
            continue
    dicts, columns = _both(msgs + [RawMessage("t", 0, 99, big)], monkeypatch)
    _assert_same(dicts, columns)
    assert str(columns.tables.detections["nid"].dtype) == "Int64"
    dicts, columns = _both(msgs, monkeypatch)
    _assert_same(dicts, columns)
    assert str(columns.tables.detections["nid"].dtype) == "Int32"


def test_the_block_is_a_sequence_of_fastavros_dicts(shared_data):
    payload = sorted((shared_data / "ztf" / "fink_sample_1166").glob("*.avro"))[3].read_bytes()
    record = read_packet(payload, columnar=True).records[0]
    want = next(iter(fastavro.reader(io.BytesIO(payload))))
    block = record["prv_candidates"]
    assert type(block).__name__ == "ItemBlock"
    assert block == want["prv_candidates"] and want["prv_candidates"] == block
    assert list(block) == want["prv_candidates"] and block[1] == want["prv_candidates"][1]
    assert len(block) == len(want["prv_candidates"]) and np.shape(block.ints)[0] == len(block)
    assert read_packet(payload).records[0] == want  # without columnar=True: plain lists
    assert type(read_packet(payload).records[0]["prv_candidates"]) is list


@pytest.mark.parametrize("schema", ["ztf", "fink"])
def test_simulated_nights_give_the_same_tables_either_way(monkeypatch, schema):
    """The simulator's ZTF 4.02 alerts (history entries as records, forced photometry beside) and its Fink-style
    ones (entries in a ["record", "null"] union), over three nights so that histories overlap within a batch."""
    from alert_broker.simulator import SimConfig, iter_alerts

    alerts = list(iter_alerts(SimConfig(objects=300, nights=3, seed=21, ztf_schema=schema)))
    msgs = [RawMessage("sim", 0, i, a.payload) for i, a in enumerate(alerts)]
    dicts, columns = _both(msgs, monkeypatch)
    _assert_same(dicts, columns)
    assert _columnar_share(msgs) > 0.9 and len(columns.tables.non_detections) > len(alerts)
    if schema == "ztf":  # the Fink-style schema has no forced photometry
        assert _columnar_share(msgs, "fp_hists") > 0.9
        assert len(columns.tables.forced_photometry) > len(alerts)


def test_real_forced_photometry_goes_the_columns_way(shared_data):
    msgs = _messages(shared_data / "ztf" / "forced_photometry")
    assert _columnar_share(msgs, "fp_hists") == 1.0


#: Changes to an alert's forced photometry (``fp_hists``), each breaking or exercising one rule.
_FORCED_CHANGES = {
    "a point before ZTF": lambda fp: fp[0].update(jd=2450000.5),
    "a point after 2100": lambda fp: fp[-1].update(jd=2488070.0),
    "a NaN time": lambda fp: fp[0].update(jd=float("nan")),
    "band 4": lambda fp: fp[0].update(fid=4),
    "pid 0": lambda fp: fp[0].update(pid=0),
    "a negative pid": lambda fp: fp[1].update(pid=-3),
    "a null procstatus": lambda fp: fp[0].update(procstatus=None),
    "a non-ASCII procstatus": lambda fp: fp[0].update(procstatus="\u00e9t\u00e9"),
    "a null flux": lambda fp: fp[0].update(forcediffimflux=None),
    "ZTF's -99999 flux": lambda fp: fp[0].update(forcediffimflux=-99999.0),
    "a repeated point": lambda fp: fp.append(dict(fp[0])),
    "a null entry": lambda fp: fp.__setitem__(0, None),
    "no points": lambda fp: fp.clear(),
}


@pytest.mark.parametrize("change", sorted(_FORCED_CHANGES))
def test_forced_photometry_breaking_a_rule_gives_the_same_tables_and_reasons(monkeypatch, change):
    """Simulated ZTF 4.02 alerts (each with ~30 forced points), every third one changed: the dict path's forced
    table, dropped points and dead letters, whichever way each alert's points went."""
    from alert_broker.simulator import SimConfig, iter_alerts

    alerts = list(iter_alerts(SimConfig(objects=200, nights=2, seed=5)))[:60]
    msgs, changed = [], 0
    for i, a in enumerate(alerts):
        payload = a.payload
        if i % 3 == 0:
            try:
                payload = _rewrite(payload, _FORCED_CHANGES[change], field="fp_hists", null_items=i % 2 == 0)
                changed += 1
            except (IndexError, ValueError, TypeError, fastavro.validation.ValidationError):
                pass  # the schema does not allow the value
        msgs.append(RawMessage("sim", 0, i, payload))
    dicts, columns = _both(msgs, monkeypatch)
    _assert_same(dicts, columns)
    assert changed > 0 and len(columns.tables.forced_photometry) > 0
    if change == "a non-ASCII procstatus" and changed:
        assert "\u00e9t\u00e9" in set(columns.tables.forced_photometry["procstatus"].dropna())


def test_the_warm_up_compiles_both_kernels_and_reads_its_entries_back():
    """``broker warm`` and each worker's start run this: it raises when a kernel misreads its one entry."""
    from alert_broker.surveys import compiled_reader, ztf_history

    ztf_history.warm_up()
    assert ztf_history._check_forced.signatures and ztf_history._check.signatures
    assert compiled_reader._ascii_rows.signatures  # the blocks' text check, too


def test_text_that_is_not_utf8_in_a_field_the_tables_do_not_take_refuses_the_alert_either_way(
    shared_data, monkeypatch
):
    """The columns never decode ``programpi``; its bytes are still checked, so a packet fastavro would refuse
    (text that is not UTF-8) is refused with the same reason on both paths."""
    files = sorted((shared_data / "ztf" / "fink_sample_1166").glob("*.avro"))[:12]
    msgs = []
    for i, f in enumerate(files):
        payload = f.read_bytes()
        if i % 4 == 0:
            marked = _rewrite(payload, lambda prv: prv[0].update(programpi="@@@@"))
            payload = marked.replace(b"@@@@", b"\xff\xfe@@", 1)
        msgs.append(RawMessage("t", 0, i, payload))
    dicts, columns = _both(msgs, monkeypatch)
    _assert_same(dicts, columns)
    assert len(columns.dead) == 3 and all("utf" in d.reason.lower() for d in columns.dead)
