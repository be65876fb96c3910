"""User filters (pipeline/filters.py): the expression language, the file formats, the error policy, the shipped
examples and the cost per record."""

from __future__ import annotations

import ast
import copy
import logging
import pickle
import random
import time
from pathlib import Path

import pytest

from alert_broker.pipeline import filters as filters_module
from alert_broker.pipeline.filters import (
    EXAMPLES_DIR,
    Filter,
    FilterError,
    FilterSet,
    compile_expression,
    example_filters,
    expression_filter,
    filters_from_config,
    load_filters,
    load_python_filter,
    load_toml_filter,
)

BASE = {
    "schema_version": "1.0",
    "survey": "ztf",
    "oid": "ZTF20aaelulu",
    "candid": 123,
    "mjd": 59000.1,
    "night": 20200101,
    "ra": 10.0,
    "dec": -5.0,
    "band": "g",
    "fid": 1,
    "magpsf": 18.2,
    "sigmapsf": 0.05,
    "magpsf_corr": 17.9,
    "flux": 1234.5,
    "isdiffpos": 1,
    "ndethist": 3,
    "ncovhist": 10,
    "sgscore1": 0.1,
    "distpsnr1": 2.0,
    "ssdistnr": -999.0,
    "rb": 0.8,
    "drb": 0.99,
    "object": {
        "ndet": 5,
        "firstmjd": 58999.0,
        "lastmjd": 59000.1,
        "deltajd": 1.1,
        "meanra": 10.0,
        "meandec": -5.0,
        "stellar": False,
        "xid": "ZTF20aaelulu",
    },
    "magstats": {
        "g": {"ndet": 3, "magmin": 17.5, "magmean": 18.0, "dmdt_first": -0.3, "firstmjd": 58999.0},
        "r": {"ndet": 2, "magmin": 17.9, "magmean": 18.1, "dmdt_first": -0.1, "firstmjd": 58999.1},
    },
    "xmatch": {
        "vsx": {"id": "X", "dist_arcsec": 0.4, "properties": {"VType": "RRAB"}},
        "2mass": {"id": "J1", "dist_arcsec": 0.9, "properties": {}},
    },
    "stamp": {
        "SN": 0.7,
        "AGN": 0.1,
        "VS": 0.1,
        "asteroid": 0.05,
        "bogus": 0.05,
        "class": "SN",
        "probability": 0.7,
        "version": "1.1.0",
    },
    "lc": {
        "class": "SNIa",
        "probability": 0.6,
        "top": "Transient",
        "top_probability": 0.9,
        "version": "1.1.0",
        "classifier": "lc_hierarchical",
        "probabilities": {"SNIa": 0.6, "SNII": 0.2, "Periodic-Other": 0.01},
    },
    "outlier_score": 0.3,
    "stamps_ref": {"survey": "ztf", "candid": 123, "raw_path": "x", "fetch": "broker fetch 123"},
}


def rec(**changes) -> dict:
    """The base record with changes; a dotted key sets a nested field, the value ``...`` deletes it."""
    r = copy.deepcopy(BASE)
    for key, value in changes.items():
        *parents, last = key.split("__")
        target = r
        for p in parents:
            target = target[p]
        if value is ...:
            target.pop(last, None)
        else:
            target[last] = value
    return r


def ev(expression: str, record: dict | None = None) -> bool:
    return compile_expression(expression, "t")(BASE if record is None else record)


# ============================================================================================ semantics
@pytest.mark.parametrize(
    "expression, expected",
    [
        # comparisons
        ("ndethist < 4", True),
        ("ndethist < 3", False),
        ("ndethist <= 3", True),
        ("ndethist > 2", True),
        ("ndethist >= 4", False),
        ("ndethist == 3", True),
        ("ndethist != 3", False),
        ("band == 'g'", True),
        ("survey != 'lsst'", True),
        # chained
        ("0.5 < stamp.SN <= 1", True),
        ("0.5 < stamp.SN <= 0.6", False),
        ("1 < 2 < ndethist < 4", True),
        ("1 < ndethist < 3", False),
        # boolean
        ("ndethist == 3 and band == 'g'", True),
        ("ndethist == 3 and band == 'r'", False),
        ("ndethist == 4 or band == 'g'", True),
        ("ndethist == 4 or band == 'r' or fid == 2", False),
        ("ndethist == 3 and band == 'g' and fid == 1", True),
        ("not ndethist == 4", True),
        ("not xmatch.vsx", False),
        ("not xmatch.sdss", True),
        ("xmatch.vsx and True", True),
        # arithmetic
        ("ndethist + 1 == 4", True),
        ("ndethist - 1 == 2", True),
        ("ndethist * 2 == 6", True),
        ("ndethist / 2 == 1.5", True),
        ("mjd - object.firstmjd < 1.2", True),
        ("-ndethist == -3", True),
        ("+ndethist == 3", True),
        ("magpsf - magpsf_corr > 0.29", True),
        ("(ndethist + 1) * 2 == 8", True),
        # functions
        ("abs(magstats.g.dmdt_first) > 0.29", True),
        ("min(magstats.g.dmdt_first, magstats.r.dmdt_first) == -0.3", True),
        ("max(magstats.g.dmdt_first, magstats.r.dmdt_first) == -0.1", True),
        ("min(magstats.g.dmdt_first, magstats.z.dmdt_first) == -0.3", True),  # None ignored
        ("min(magstats.y.dmdt_first, magstats.z.dmdt_first) < 0", False),  # all None: None
        ("len(xmatch) == 2", True),
        ("len(magstats.g) >= 5", True),
        ("exists(stamp)", True),
        ("exists(nothing)", False),
        ("abs(-2) == 2", True),  # constant folding
        # nested access
        ("stamp.SN > 0.6", True),
        ("magstats.g.dmdt_first < -0.25", True),
        ("xmatch.vsx.properties.VType == 'RRAB'", True),
        ("xmatch['2mass'].dist_arcsec < 1", True),
        ("lc.probabilities['Periodic-Other'] < 0.1", True),
        ("stamp['class'] == 'SN'", True),
        ("stamp.class == 'SN'", True),  # a keyword after a dot
        ("lc.class == 'SNIa'", True),
        ("stamp.class_ == 'SN'", True),
        # in / not in
        ("band in ('g', 'r')", True),
        ("band in ['r', 'i']", False),
        ("band in {'g'}", True),
        ("fid in (1, 2)", True),
        ("fid not in (1, 2)", False),
        ("band not in ('r', 'i')", True),
        ("xmatch.vsx.properties.VType in ('RRAB', 'RRC')", True),
        ("'vsx' in xmatch", True),  # a field on the right
        ("'sdss' not in xmatch", True),
        ("'RR' in xmatch.vsx.properties.VType", True),  # substring of a string field
        ("band in 'gri'", True),
        # constants
        ("True", True),
        ("False", False),
        ("object.stellar == False", True),
        ("object.stellar is None", False),
    ],
)
def test_operators(expression, expected):
    assert ev(expression) is expected


def test_a_multi_line_expression_with_comments():
    text = """
    stamp.class == "SN"      # the stamp says SN
    and stamp.probability >= 0.6
    and (sgscore1 < 0.5 or
         distpsnr1 > 1)       # not a star
    """
    assert ev(text) is True
    assert ev(text, rec(sgscore1=0.9, distpsnr1=0.5)) is False
    ragged = "\n      lc.class == 'SNIa'\n  and stamp.class == 'SN'\n    and\n lc.top == 'Transient'\n"
    assert ev(ragged) is True


@pytest.mark.parametrize(
    "expression",
    [
        "missing > 1",
        "missing < 1",
        "missing >= 1",
        "missing <= 1",
        "missing == 1",
        "missing != 1",  # SQL-like: unknown is not "different"
        "missing in (1, 2)",
        "missing not in (1, 2)",
        "0 < missing < 2",
        "1 < missing",
        "missing == other_missing",
        "missing != other_missing",
        "stamp.nothing > 0",
        "nothing.at.all.deep == 'x'",
        "xmatch.sdss.dist_arcsec < 1",
        "band.letter == 'g'",  # a path through a string
        "missing + 1 > 0",
        "missing * 2 < 0",
        "ndethist / 0 > 0",  # division by zero: None
        "abs(missing) >= 0",
        "len(missing) >= 0",
        "exists(missing)",
        "missing",
        "'vsx' in missing",
    ],
)
def test_comparisons_and_arithmetic_with_missing_fields_are_false(expression):
    assert ev(expression) is False


@pytest.mark.parametrize(
    "expression",
    [
        "missing == None",
        "missing is None",
        "None == missing",
        "not missing",
        "not missing > 1",
        "not missing != 1",
        "not exists(missing)",
        "ndethist != None",
        "ndethist is not None",
        "nan_field is None",  # NaN is missing
        "ndethist / 0 == None",  # division by zero gives None
        "1 / 0 is None",
        "not exists(nan_field)",
        "stamp_none is None and not stamp_none.SN > 0",  # a None section
    ],
)
def test_explicit_tests_for_missing_values_are_true(expression):
    assert ev(expression, rec(nan_field=float("nan"), stamp_none=None)) is True


def test_a_none_section_and_a_nan_leaf_read_as_missing():
    r = rec(stamp=None, magstats__g__dmdt_first=float("nan"))
    assert ev("not stamp", r) and ev("stamp.class == None", r) and not ev("stamp.SN > 0", r)
    assert not ev("magstats.g.dmdt_first < 0", r) and ev("magstats.g.dmdt_first is None", r)
    assert ev("min(magstats.g.dmdt_first, magstats.r.dmdt_first) == -0.1", r)


def test_list_index_subscripts():
    r = rec(history=[1.0, 2.0, 3.0])
    assert ev("history[0] == 1 and history[-1] == 3", r)
    assert ev("history[7] is None", r)


def test_result_is_always_a_bool():
    assert compile_expression("stamp", "t")(BASE) is True
    assert compile_expression("missing or 0", "t")(BASE) is False


# ============================================================================================ rejected
@pytest.mark.parametrize(
    "expression, message",
    [
        ("__import__('os')", "calling '__import__' is not allowed"),
        ("__import__('os').system('true')", '.system" is not allowed; the functions are'),
        ("open('/etc/passwd')", "calling 'open' is not allowed"),
        ("eval('1')", "calling 'eval' is not allowed"),
        ("stamp.keys()", "calling 'stamp.keys' is not allowed"),
        ("x.__class__", "'__class__' is not allowed"),
        ("__builtins__", "'__builtins__' is not allowed"),
        ("x['__dict__']", "'__dict__' is not allowed"),
        ("lambda: 1", "a lambda is not allowed"),
        ("[a for a in b]", "a comprehension is not allowed"),
        ("{a for a in b}", "a comprehension is not allowed"),
        ("{a: 1 for a in b}", "a comprehension is not allowed"),
        ("any(a for a in b)", "calling 'any' is not allowed"),
        ("(a for a in b)", "a generator expression is not allowed"),
        ("x[y]", "a subscript must be a constant"),
        ("x[1:2]", "a subscript must be a constant"),
        ("x ** 2 > 1", "the operator ** is not allowed"),
        ("x % 2 == 1", "the operator % is not allowed"),
        ("x // 2 == 1", "the operator // is not allowed"),
        ("x | y", "the operator | is not allowed"),
        ("~x", "the operator ~ is not allowed"),
        ("a if b else c", "a conditional expression"),
        ("(y := 1)", "an assignment"),
        ("f'{x}' == 'a'", "an f-string is not allowed"),
        ("{'a': 1}", "a dict literal is not allowed"),
        ("(1, 2)", "only allowed on the right of 'in'"),
        ("x == [1, 2]", "only allowed on the right of 'in'"),
        ("x in (1, y)", "must hold constants only"),
        ("x in 3", "the right of 'in' must be"),
        ("x is 3", "'is' / 'is not' only test for None"),
        ("abs", "is a function: call it"),
        ("abs(1, 2)", "abs() takes 1 argument"),
        ("min()", "min() takes at least 1 argument"),
        ("exists(x=1)", "takes no keyword arguments"),
        ("min(*x)", "a starred argument is not allowed"),
        ("(1).real", "attribute access is only allowed on fields"),
        ("'a'[0]", "subscripts are only allowed on fields"),
        ("b'x' == x", "constants of type bytes are not allowed"),
        ("'a' * 3 == x", "arithmetic on str and int"),
        ("1 < 'a'", "TypeError"),
        ("import os", "syntax error"),
        ("x = 1", "syntax error"),
        ("a and", "syntax error at the end of the expression"),
        ("", "the expression is empty"),
        ("   ", "the expression is empty"),
    ],
)
def test_rejected_constructs_name_the_problem(expression, message):
    with pytest.raises(FilterError) as err:
        compile_expression(expression, "bad")
    assert message in str(err.value)
    assert "'bad'" in str(err.value)


def test_errors_give_the_position_in_the_text_the_user_wrote():
    with pytest.raises(FilterError, match=r"column 18 \('open\(1\)'\)"):
        compile_expression("ndethist > 1 and open(1)", "p")
    # line 2, after a keyword renamed on line 1 (stamp.class -> stamp.class_ must not shift columns)
    text = "stamp.class == 'SN' and stamp.class == 'SN'\n  and (lambda: 1)"
    with pytest.raises(FilterError, match=r"line 2, column 8 \('lambda: 1'\)"):
        compile_expression(text, "p")
    with pytest.raises(FilterError, match=r"column 25 \('stamp.class.__x'\)"):
        compile_expression("stamp.class == 'SN' and stamp.class.__x", "p")


def test_the_module_never_calls_eval_exec_or_compile():
    tree = ast.parse(Path(filters_module.__file__).read_text())
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert not called & {"eval", "exec", "compile", "__import__"}


# ============================================================================================ files
def test_toml_filter_defaults_and_fields(tmp_path):
    (tmp_path / "bright.toml").write_text('expression = "magpsf < 19"\n')
    f = load_toml_filter(tmp_path / "bright.toml")
    assert (f.name, f.topic, f.kind, f.description) == ("bright", "bright", "expression", "")
    assert f.accept(BASE) is True and f.accept(rec(magpsf=19.5)) is False
    (tmp_path / "named.toml").write_text(
        'name = "n1"\ntopic = "alerts.n1"\ndescription = "d"\nreferences = ["r"]\n'
        'expression = """\nmagpsf < 19   # bright\n"""\n'
    )
    f = load_toml_filter(tmp_path / "named.toml")
    assert (f.name, f.topic, f.description, f.references) == ("n1", "alerts.n1", "d", ("r",))


@pytest.mark.parametrize(
    "text, message",
    [
        ('expresion = "x > 1"\n', "unknown keys ['expresion']"),
        ('name = "a"\n', "no 'expression'"),
        ("expression = 3\n", "'expression' must be a string"),
        ('expression = "x >"\n', "syntax error"),
        ('name = "a b"\nexpression = "x > 1"\n', "the name 'a b'"),
        ('topic = "t/1"\nexpression = "x > 1"\n', "the topic 't/1'"),
        ('references = "r"\nexpression = "x > 1"\n', "'references' must be a list"),
        ("expression = ", "cannot read the filter"),
    ],
)
def test_bad_toml_filters(tmp_path, text, message):
    path = tmp_path / "f.toml"
    path.write_text(text)
    with pytest.raises(FilterError) as err:
        load_toml_filter(path)
    assert message in str(err.value) and str(path) in str(err.value)


PY_FILTER = '''"""Bright alerts.

More text."""
NAME = "bright_py"
TOPIC = "bright.topic"

def accept(record):
    return record["magpsf"] < 19
'''


def test_python_filter_loads_and_runs(tmp_path):
    path = tmp_path / "bright.py"
    path.write_text(PY_FILTER)
    f = load_python_filter(path)
    assert (f.name, f.topic, f.kind, f.description) == (
        "bright_py",
        "bright.topic",
        "python",
        "Bright alerts.",
    )
    assert f.accept(BASE) is True and f.accept(rec(magpsf=20.0)) is False
    (tmp_path / "plain.py").write_text("def accept(r):\n    return True\n")
    assert load_python_filter(tmp_path / "plain.py").name == "plain"


@pytest.mark.parametrize(
    "text, message",
    [
        ("x = 1\n", "defines no function accept"),
        ("accept = 3\n", "defines no function accept"),
        ("def accept(a, b):\n    return True\n", "exactly one argument"),
        ("def accept():\n    return True\n", "exactly one argument"),
        ("raise RuntimeError('boom')\n", "loading the filter failed: RuntimeError: boom"),
        ("def accept(r) return\n", "loading the filter failed: SyntaxError"),
        ("NAME = 'a/b'\ndef accept(r):\n    return True\n", "NAME 'a/b'"),
    ],
)
def test_bad_python_filters(tmp_path, text, message):
    path = tmp_path / "f.py"
    path.write_text(text)
    with pytest.raises(FilterError) as err:
        load_python_filter(path)
    assert message in str(err.value)


def test_a_folder_loads_every_filter_and_reports_every_broken_one(tmp_path):
    (tmp_path / "a.toml").write_text('expression = "ndethist > 1"\n')
    (tmp_path / "b.py").write_text(PY_FILTER)
    (tmp_path / "_helper.py").write_text("raise RuntimeError('not a filter')\n")
    (tmp_path / "README.md").write_text("notes")
    assert [f.name for f in load_filters(tmp_path)] == ["a", "bright_py"]
    (tmp_path / "c.toml").write_text('expression = "x ** 2"\n')
    (tmp_path / "d.py").write_text("y = 1\n")
    with pytest.raises(FilterError) as err:
        load_filters(tmp_path)
    assert "c.toml" in str(err.value) and "d.py" in str(err.value)
    with pytest.raises(FilterError, match="no such filter"):
        load_filters(tmp_path / "nope")
    with pytest.raises(FilterError, match="ends in .toml or .py"):
        load_filters(tmp_path / "README.md")


def test_filters_from_the_config():
    out = filters_from_config(
        {
            "bright": "magpsf < 19",
            "sn": {"expression": "stamp.class == 'SN'", "topic": "sn.topic", "description": "SNe"},
        }
    )
    assert [(f.name, f.topic, f.origin) for f in out] == [
        ("bright", "bright", "config"),
        ("sn", "sn.topic", "config"),
    ]
    assert all(f.accept(BASE) for f in out)
    with pytest.raises(FilterError, match="must be an expression or a table"):
        filters_from_config({"x": 3})
    with pytest.raises(FilterError, match="unknown keys"):
        filters_from_config({"x": {"expression": "a", "topics": "b"}})


def test_filter_names_are_unique_in_a_set(tmp_path):
    with pytest.raises(FilterError, match="two filters named 'a'"):
        FilterSet([expression_filter("a", "x > 1"), expression_filter("a", "x > 2")])


def test_load_combines_paths_config_and_examples(tmp_path):
    (tmp_path / "mine.toml").write_text('expression = "ndethist > 1"\n')
    fs = FilterSet.load([tmp_path], {"cfg": "fid == 1"}, examples=True)
    assert set(fs.names) == {f.name for f in example_filters()} | {"mine", "cfg"}


# ============================================================================================ the set
FAILING = """
def accept(record):
    if record["candid"] % 3 == 0:
        raise ValueError(f"no luck with {record['candid']}")
    return True
"""


def test_a_failing_filter_counts_its_errors_keeps_the_first_and_leaves_the_others_alone(tmp_path, caplog):
    path = tmp_path / "flaky.py"
    path.write_text(FAILING)
    fs = FilterSet(
        [
            load_python_filter(path),
            expression_filter("odd_band", "band > 3"),  # str > int: fails on every record
            expression_filter("all", "candid > 0"),
        ]
    )
    records = [rec(candid=c) for c in range(1, 11)]
    with caplog.at_level(logging.WARNING, logger="alert_broker.pipeline.filters"):
        out = fs.evaluate(records)
        out2 = fs.evaluate(records)  # a second batch: counted, not logged again
    assert out == out2
    assert out["flaky"] == [0, 1, 3, 4, 6, 7, 9]  # candids 3, 6, 9 failed
    assert out["odd_band"] == []
    assert out["all"] == list(range(10))
    s = fs.summary()["filters"]
    assert (s["flaky"]["matched"], s["flaky"]["errors"], s["flaky"]["evaluated"]) == (14, 6, 20)
    assert s["flaky"]["first_error"]["candid"] == 3
    assert s["flaky"]["first_error"]["message"] == "ValueError: no luck with 3"
    assert (s["odd_band"]["errors"], s["odd_band"]["first_error"]["candid"]) == (20, 1)
    assert "TypeError" in s["odd_band"]["first_error"]["message"]
    assert (s["all"]["matched"], s["all"]["errors"], s["all"]["first_error"]) == (20, 0, None)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and {r.filter for r in warnings} == {"flaky", "odd_band"}
    assert "flaky" in fs.render() and "6 errors (first on candid 3" in fs.render()


def test_evaluate_survives_anything_a_record_can_be():
    fs = FilterSet([expression_filter("a", "stamp.SN > 0.5")])
    odd = [None, 3, "text", {"stamp": "not a dict"}, {"stamp": {"SN": "high"}}, BASE]
    assert fs.evaluate(odd) == {"a": [5]}
    s = fs.summary()["filters"]["a"]
    assert s["errors"] == 4  # None, 3, "text" have no .get; "high" > 0.5 is a TypeError


def test_evaluate_is_independent_of_record_order():
    fs = FilterSet(example_filters())
    records = _mixed_records(400)
    base = {name: {records[i]["candid"] for i in idx} for name, idx in fs.evaluate(records).items()}
    assert any(base.values())
    for seed in range(3):
        shuffled = records[:]
        random.Random(seed).shuffle(shuffled)
        got = {name: {shuffled[i]["candid"] for i in idx} for name, idx in fs.evaluate(shuffled).items()}
        assert got == base
    # one record at a time gives the same answers as the batch
    single = {name: set() for name in fs.names}
    for r in records:
        for name, idx in fs.evaluate([r]).items():
            if idx:
                single[name].add(r["candid"])
    assert single == base


def test_route_by_topic_merges_filters_that_share_one():
    fs = FilterSet(
        [
            expression_filter("g", "band == 'g'", topic="bands"),
            expression_filter("r", "band == 'r'", topic="bands"),
            expression_filter("bright", "magpsf < 18"),
        ]
    )
    records = [rec(candid=1, band="g"), rec(candid=2, band="r", magpsf=17.0), rec(candid=3, band="i")]
    routed = fs.route(records)
    assert [r["candid"] for r in routed["bands"]] == [1, 2]
    assert [r["candid"] for r in routed["bright"]] == [2]


def test_filters_and_sets_pickle_by_definition(tmp_path):
    path = tmp_path / "flaky.py"
    path.write_text(FAILING)
    fs = FilterSet([load_python_filter(path), *example_filters()])
    records = _mixed_records(200)
    before = fs.evaluate(records)
    again = pickle.loads(pickle.dumps(fs))
    assert isinstance(again.filters[0], Filter) and again.filters[0].kind == "python"
    assert again.evaluate(records) == before
    assert again.stats["flaky"].evaluated == 400  # the counts travelled too


def test_worker_counts_merge_into_the_driver_set(caplog):
    driver = FilterSet([expression_filter("bad", "band > 1")])
    worker = pickle.loads(pickle.dumps(driver))
    worker.report_errors = False
    with caplog.at_level(logging.WARNING, logger="alert_broker.pipeline.filters"):
        worker.evaluate([rec(candid=7), rec(candid=8)])
        assert not caplog.records
        driver.merge(worker.take_stats())
        worker.evaluate([rec(candid=9)])
        driver.merge(worker.take_stats())
    s = driver.summary()["filters"]["bad"]
    assert (s["evaluated"], s["errors"], s["first_error"]["candid"]) == (3, 3, 7)
    assert len(caplog.records) == 1  # reported once, by the driver
    assert worker.stats["bad"].evaluated == 0  # take_stats started afresh


# ============================================================================================ the examples
def test_the_examples_ship_in_the_package_and_load():
    assert EXAMPLES_DIR.is_dir()
    names = {f.name: f for f in example_filters()}
    assert set(names) == {
        "young_sn",
        "fast_risers",
        "nuclear_transients",
        "periodic_variables",
        "high_outlier",
    }
    assert names["nuclear_transients"].kind == "python"
    assert all(f.description and f.references for f in names.values())
    assert all(f.topic == f.name for f in names.values())


def _young_sn(**changes) -> dict:
    base = {
        "stamp__class": "SN",
        "stamp__probability": 0.8,
        "stamp__SN": 0.8,
        "ndethist": 2,
        "mjd": 59001.0,
        "object__firstmjd": 58999.5,
        "isdiffpos": 1,
        "sgscore1": 0.1,
        "distpsnr1": 0.5,
        "ssdistnr": -999.0,
    }
    return rec(**{**base, **changes})


def _fast_riser(**changes) -> dict:
    base = {
        "magstats__g__dmdt_first": -0.1,
        "magstats__r__dmdt_first": -0.4,
        "mjd": 59001.0,
        "object__firstmjd": 58999.0,
        "isdiffpos": 1,
        "stamp__class": "SN",
    }
    return rec(**{**base, **changes})


def _nuclear(**changes) -> dict:
    base = {"distpsnr1": 0.3, "sgscore1": 0.05, "isdiffpos": 1, "ssdistnr": -999.0, "stamp__class": "SN"}
    return rec(**{**base, **changes})


def _periodic(**changes) -> dict:
    base = {"lc__top": "Periodic", "lc__top_probability": 0.9, "lc__class": "RRL", "lc__probability": 0.8}
    return rec(**{**base, **changes})


EXAMPLE_CASES = {
    "young_sn": (
        [
            _young_sn(),
            _young_sn(sgscore1=0.9, distpsnr1=3.0),  # a star, but far away
            _young_sn(sgscore1=-999.0, distpsnr1=-999.0),  # no PS1 source
            _young_sn(ssdistnr=60.0),  # no SSO match (Fink's 60)
            _young_sn(stamp__SN=..., stamp__AGN=...),  # only class/probability (pipeline/output.py shape)
        ],
        [
            _young_sn(stamp__class="AGN"),
            _young_sn(stamp__probability=0.4),
            _young_sn(object__firstmjd=58990.0),  # not young
            _young_sn(ndethist=40),
            _young_sn(isdiffpos=-1),
            _young_sn(sgscore1=0.9, distpsnr1=0.3),  # on a PS1 star
            _young_sn(ssdistnr=2.0),  # a known asteroid
            _young_sn(stamp=None),  # not classified
            _young_sn(object=...),  # no object statistics: age unknown
        ],
    ),
    "fast_risers": (
        [
            _fast_riser(),
            _fast_riser(magstats={"z": {"dmdt_first": -0.5}}),  # any band (LSST)
            _fast_riser(stamp=None),  # no stamp class is no veto
        ],
        [
            _fast_riser(magstats__r__dmdt_first=-0.2),
            _fast_riser(magstats={}),
            _fast_riser(magstats={"g": {"dmdt_first": None}, "r": {"dmdt_first": float("nan")}}),
            _fast_riser(object__firstmjd=58900.0),
            _fast_riser(isdiffpos=-1),
            _fast_riser(stamp__class="bogus"),
            _fast_riser(stamp__class="asteroid"),
        ],
    ),
    "nuclear_transients": (
        [_nuclear(), _nuclear(ssdistnr=60.0), _nuclear(stamp=None), _nuclear(distpsnr1=0, sgscore1=0)],
        [
            _nuclear(distpsnr1=1.5),
            _nuclear(sgscore1=0.6),
            _nuclear(sgscore1=-999.0),
            _nuclear(distpsnr1=-999.0),
            _nuclear(distpsnr1=float("nan")),
            _nuclear(sgscore1=None),
            _nuclear(distpsnr1=...),
            _nuclear(isdiffpos=-1),
            _nuclear(ssdistnr=1.0),
            _nuclear(stamp__class="bogus"),
        ],
    ),
    "periodic_variables": (
        [_periodic(), *(_periodic(lc__class=c) for c in ("CEP", "E", "DSCT", "LPV"))],
        [
            _periodic(lc__top="Stochastic"),
            _periodic(lc__class="Periodic-Other"),
            _periodic(lc__probability=0.3),
            _periodic(lc__top_probability=0.5),
            _periodic(lc=None),
            BASE,
        ],
    ),
    "high_outlier": (
        [rec(outlier_score=0.7), rec(outlier_score=0.99)],
        [
            rec(outlier_score=0.5),
            rec(outlier_score=None),
            rec(outlier_score=float("nan")),
            rec(outlier_score=...),
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(EXAMPLE_CASES))
def test_each_example_selects_what_it_should(name):
    fs = FilterSet([f for f in example_filters() if f.name == name])
    accepted, rejected = EXAMPLE_CASES[name]
    out = fs.evaluate(accepted + rejected)[name]
    assert out == list(range(len(accepted))), f"{name}: matched {out}"
    assert fs.summary()["filters"][name]["errors"] == 0


# ============================================================================================ cost
def _mixed_records(n: int) -> list[dict]:
    """A mix of records the examples match and records they do not, deterministically."""
    rng = random.Random(42)
    makers = [_young_sn, _fast_riser, _nuclear, _periodic, lambda **k: rec(**k)]
    out = []
    for i in range(n):
        r = makers[i % len(makers)]()
        r["candid"] = 1000 + i
        r["outlier_score"] = rng.random()
        r["ndethist"] = rng.randint(1, 12)
        r["stamp"] = None if rng.random() < 0.2 else r["stamp"]
        if i % len(makers) != 1:  # not a made fast riser: a rise rate from slow to fast
            r["magstats"]["g"]["dmdt_first"] = rng.uniform(-0.4, 0.1)
        if rng.random() < 0.5:
            r["xmatch"] = {}
        out.append(r)
    return out


def test_throughput_per_record_per_filter():
    """Cost of evaluate per record per filter (printed; ``pytest -s`` shows it). The target is a few
    microseconds; the bound here is loose so a busy test machine does not fail it."""
    records = _mixed_records(20_000)
    fs = FilterSet(
        [
            *example_filters(),
            expression_filter("issue_example", "stamp.SN > 0.6 and ndethist <= 2 and not xmatch.vsx"),
            expression_filter("chain_in", "0.5 < outlier_score <= 1 and band in ('g', 'r')"),
        ]
    )
    fs.evaluate(records[:1000])  # warm up
    fs = FilterSet(fs.filters)
    t0 = time.perf_counter()
    fs.evaluate(records)
    total = time.perf_counter() - t0
    summary = fs.summary()["filters"]
    print()
    for name, s in summary.items():
        print(
            f"  {name:<20} {s['us_per_record']:6.2f} us/record  ({s['matched']} of {s['evaluated']} matched)"
        )
    per = 1e6 * total / (len(records) * len(fs))
    print(f"  all filters: {per:.2f} us per record per filter")
    assert all(s["errors"] == 0 for s in summary.values())
    assert per < 50
