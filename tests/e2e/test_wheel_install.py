"""The package as a user installs it: the wheel built from the repository, in a fresh virtual environment
outside the checkout, runs a small night and classifies with both shipped models (they ship inside it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e]


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)
    assert proc.returncode == 0, (
        f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


@pytest.fixture(scope="module")
def fresh_install(tmp_path_factory) -> Path:
    """A new virtual environment with the wheel installed (no editable link to the checkout). Its third-party
    dependencies come from the test environment's site-packages through a ``.pth`` path line, which adds that
    folder to the path without running its ``.pth`` hooks (so the checkout's editable install is not seen)."""
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(REPO)])
    wheels = list(dist.glob("alert_broker-*.whl"))
    assert len(wheels) == 1
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    py = venv / "bin" / "python"
    site = Path(
        _run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    )
    (site / "deps-from-test-env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--quiet", str(wheels[0])]
    )
    _share_compiled_kernels(site / "alert_broker")
    return venv


def _share_compiled_kernels(installed: Path) -> int:
    """Give the fresh install the checkout's numba cache, as ``broker warm`` would have built it there.

    Without it the installed night spends ~100 s of its ~115 compiling the kernels from cold (what ``make setup``'s
    ``broker warm`` does, and times, on every fresh machine); this test is about what the wheel holds and runs.
    numba finds a cached kernel by its file name beside the source and trusts it while the source's size and
    modification time match, so the installed sources take the checkout's times (their bytes are the same: the
    size is checked). Returns how many cache files were copied (none when the checkout has not been warmed)."""
    copied = 0
    for cached in REPO.glob("*/**/__pycache__/*.nb[ic]"):
        rel = cached.relative_to(REPO)
        if rel.parts[0].startswith("."):
            continue
        # the repository's top-level folders are alert_broker's subpackages (pyproject's package-dir)
        sub = rel.parts[1:] if rel.parts[0] == "alert_broker" else rel.parts
        target = installed.joinpath(*sub)
        if target.parent.parent.is_dir():
            target.parent.mkdir(exist_ok=True)
            shutil.copy2(cached, target)
            copied += 1
    for source in installed.rglob("*.py"):
        rel = source.relative_to(installed)
        origin = REPO / rel if (REPO / rel).exists() else REPO / "alert_broker" / rel
        if origin.exists() and origin.stat().st_size == source.stat().st_size:
            st = origin.stat()
            os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns))
    return copied


def test_wheel_holds_one_package_and_the_models(fresh_install):
    py = fresh_install / "bin" / "python"
    out = _run(
        [
            str(py),
            "-c",
            "import alert_broker, alert_broker.pipeline.cli as cli; from alert_broker.models import shipped_models;"
            "print(alert_broker.__file__); print(cli.__file__); print(shipped_models())",
        ],
        cwd=fresh_install,
    ).stdout.split()
    for path in out:
        assert Path(path).resolve().is_relative_to(fresh_install.resolve()), path
    models = Path(out[2])
    assert (models / "lc_hierarchical").is_dir() and (models / "stamp_classifier").is_dir()


def test_installed_broker_runs_a_night_with_both_classifiers(fresh_install, shared_data, tmp_path):
    night = tmp_path / "night"
    night.mkdir()
    for f in sorted((shared_data / "ztf" / "fink_sample_1166").glob("*.avro"))[:40]:
        shutil.copy(f, night / f.name)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    proc = _run(
        [
            str(fresh_install / "bin" / "broker"),
            "run-night",
            "--source",
            str(night),
            "--out",
            str(out),
            "--n-workers",
            "1",
            "--no-progress",
            "--dashboard-address",
            ":0",
        ],  # fmt: skip
        cwd=tmp_path,
        env=env,
    )
    assert "alerts written    40" in proc.stdout
    probs = pd.read_parquet(out / "lake" / "probabilities")
    assert {"lc_hierarchical", "stamp_classifier"} <= set(probs["classifier_name"].astype(str))
    assert "classifiers: lc_hierarchical" in proc.stderr and "stamp_classifier" in proc.stderr


def test_a_missing_model_is_an_error_not_a_silent_none(fresh_install, tmp_path):
    empty = tmp_path / "registry"
    empty.mkdir()
    proc = subprocess.run(
        [str(fresh_install / "bin" / "broker"), "run-night", "--out", str(tmp_path), "--models", str(empty)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    assert "no model 'lc_hierarchical'" in proc.stderr or "no model 'stamp_classifier'" in proc.stderr
