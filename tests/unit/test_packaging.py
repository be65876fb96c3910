"""The installed package is complete and self-contained: one namespace, every subpackage and model shipped, the
image copies what the wheel holds, and nothing refers to the folders by their bare names."""

from __future__ import annotations

import contextlib
import re
import tomllib
import zlib
from pathlib import Path

import pytest

from alert_broker.models import shipped_models
from tests.architecture import REPO, function_imports, lazy_import_problems, package_dirs, run_import_linter

PROJECT_FOLDERS = ("pipeline", "features", "surveys", "simulator", "classifiers", "storage", "api")


def test_every_package_folder_is_listed_for_the_wheel():
    """Every folder with Python, and every data folder directly inside one (schemas, static files, a model's
    versions): setuptools ships the data through package-data either way, but warns at every build, loudly,
    that an unlisted folder with an importable name "would be ignored"."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = set()
    for name, folder in package_dirs().items():
        for init in folder.rglob("__init__.py"):
            rel = init.parent.relative_to(folder)
            found.add(".".join([name, *rel.parts]))
        for sub in folder.rglob("*"):
            data_folder = sub.is_dir() and sub.name.isidentifier() and not (sub / "__init__.py").exists()
            if data_folder and "__pycache__" not in sub.parts and (sub.parent / "__init__.py").exists():
                found.add(".".join([name, *sub.relative_to(folder).parts]))
    assert found == listed, (
        f"pyproject.toml lists {sorted(listed - found)} too many, {sorted(found - listed)} missing"
    )
    assert {"alert_broker.api.static", "alert_broker.models.lc_hierarchical"} <= found


def test_the_image_copies_every_folder_the_package_maps():
    dockerfile = (REPO / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\S+) ", dockerfile, re.M))
    folders = {str(p.relative_to(REPO)) for p in package_dirs().values()}
    assert folders <= copied, f"the Dockerfile does not copy {sorted(folders - copied)}"


def test_no_module_imports_a_project_folder_by_its_bare_name():
    """``import classifiers`` works from a checkout (the folder is on the path) and fails once installed."""
    bare = re.compile(rf"^\s*(from|import)\s+({'|'.join(PROJECT_FOLDERS)})(\.|\s|$)", re.M)
    offenders = []
    for folder in (*package_dirs().values(), REPO / "tests", REPO / "bench", REPO / "docs"):
        for path in folder.rglob("*.py"):
            for m in bare.finditer(path.read_text()):
                offenders.append(f"{path.relative_to(REPO)}: {m.group(0).strip()}")
    assert not offenders


def test_shipped_pickles_name_only_installed_modules():
    """A pickled model refers to its classes by module path: an old path would load from a checkout only."""
    files = list(shipped_models().rglob("*.joblib"))
    assert files
    for path in files:
        raw = path.read_bytes()
        with contextlib.suppress(zlib.error):
            raw = zlib.decompress(raw)
        modules = {m.decode() for m in re.findall(rb"\x8c.([A-Za-z_][\w.]*)\x94?", raw)}
        ours = {m for m in modules if m.split(".")[0] in PROJECT_FOLDERS + ("alert_broker",)}
        assert ours, f"{path}: found no project classes in the pickle"
        assert all(m.startswith("alert_broker.") for m in ours), f"{path}: {sorted(ours)}"


def test_layers_and_cycles_hold():
    ok, report = run_import_linter()
    assert ok, report


def test_lazy_imports_have_reasons_and_are_not_project_modules():
    assert lazy_import_problems() == []


@pytest.mark.parametrize(
    "source, expected",
    [
        ("def f():\n    import alert_broker.storage\n", "project's own module"),
        ("def f():\n    from . import x\n", "project's own module"),
        ("def f():\n    import numpy\n", "without a reason"),
    ],
)
def test_the_lazy_import_rule_catches_what_it_should(tmp_path, monkeypatch, source, expected):
    import tests.architecture as arch

    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "mod.py").write_text(source)
    assert function_imports(pkg / "mod.py")
    monkeypatch.setattr(arch, "REPO", tmp_path)
    monkeypatch.setattr(arch, "package_dirs", lambda: {"alert_broker": pkg})
    problems = arch.lazy_import_problems()
    assert len(problems) == 1 and expected in problems[0]


def test_a_lazy_import_with_a_reason_passes(tmp_path, monkeypatch):
    import tests.architecture as arch

    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "mod.py").write_text("def f():\n    import tensorflow  # lazy: seconds to start\n")
    monkeypatch.setattr(arch, "REPO", tmp_path)
    monkeypatch.setattr(arch, "package_dirs", lambda: {"alert_broker": pkg})
    assert arch.lazy_import_problems() == []


def test_models_live_in_the_package():
    assert shipped_models() == (REPO / "models").resolve() or shipped_models().parts[-2:] == (
        "alert_broker",
        "models",
    )
    assert Path(shipped_models(), "lc_hierarchical").is_dir()
