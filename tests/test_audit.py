"""The offline dependency audit (`.ci/audit.py`, run by `make audit`) catches what it claims to catch."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / ".ci" / "audit.py"
LOCK = ROOT / "requirements" / "lock.txt"
ADVISORIES = ROOT / ".ci" / "advisories.yaml"


def _load_audit():
    spec = importlib.util.spec_from_file_location("ci_audit", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["ci_audit"] = module
    spec.loader.exec_module(module)
    return module


audit = _load_audit()


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--offline", *args], capture_output=True, text=True, timeout=120
    )


def test_project_lock_passes_and_reports_counts():
    done = _run("--lock", str(LOCK), "--advisories", str(ADVISORIES))
    assert done.returncode == 0, done.stdout + done.stderr
    pins, uncheckable = audit.parse_lock(LOCK)
    assert uncheckable == []
    assert f"{len(pins)} locked packages checked" in done.stdout
    # The direct dependencies whose floors this list sets are all locked and covered.
    for name in ("bentoml", "mlflow", "jinja2", "pyarrow", "werkzeug", "starlette", "urllib3"):
        assert name in pins


def test_lock_pins_only_public_files_and_meets_the_floors():
    text = LOCK.read_text()
    assert "file:" not in text and "/opt/" not in text
    pins, _ = audit.parse_lock(LOCK)
    advisories = audit.load_advisories(ADVISORIES)
    assert audit.check(pins, advisories) == []
    assert pins["bentoml"] >= audit.Version("1.4.39")
    assert pins["mlflow"] >= audit.Version("3.11.1")


def test_vulnerable_pin_fails_with_the_advisory_named(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text(
        "bentoml==1.4.38 \\\n    --hash=sha256:" + "0" * 64 + "\n    # via scrm-models\n"
        "jinja2==3.1.6\nwerkzeug==3.0.5\n"
    )
    done = _run("--lock", str(lock), "--advisories", str(ADVISORIES))
    assert done.returncode == 1
    assert "VULNERABLE bentoml==1.4.38: CVE-2026-44345 (fixed in 1.4.39)" in done.stdout
    assert "VULNERABLE werkzeug==3.0.5: CVE-2024-49767" in done.stdout
    assert "jinja2" not in done.stdout.split("VULNERABLE", 1)[1]
    assert "3 locked packages checked" in done.stdout


def test_multi_range_advisory_matches_each_range_only(tmp_path):
    advisories = audit.load_advisories(ADVISORIES)
    found = {
        v: [f.advisory.id for f in audit.check({"protobuf": audit.Version(v)}, advisories)]
        for v in ("4.25.7", "5.29.4", "5.29.5", "6.31.1")
    }
    assert "CVE-2025-4565" in found["4.25.7"] and "CVE-2025-4565" in found["5.29.4"]
    assert found["5.29.5"] == [] and found["6.31.1"] == []


def test_unpinned_or_url_requirement_cannot_be_checked(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text("jinja2>=3.1\n-e ./vendored\nsomepkg @ file:///opt/wheels/somepkg-1.0-py3-none-any.whl\n")
    done = _run("--lock", str(lock), "--advisories", str(ADVISORIES))
    assert done.returncode == 1
    assert done.stdout.count("CANNOT CHECK") == 3


def test_empty_lock_fails(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text("# nothing pinned\n")
    assert _run("--lock", str(lock), "--advisories", str(ADVISORIES)).returncode == 1


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{package: x, affected: '<1.0', fixed_in: '1.0'}", "missing id"),
        ("{package: x, affected: 'not a range', id: CVE-0, fixed_in: '1.0'}", "bad affected range"),
        ("{package: x, affected: '<2.0', id: CVE-0, fixed_in: '1.5'}", "lies in its own range"),
    ],
)
def test_malformed_advisory_list_is_rejected(tmp_path, entry, message):
    bad = tmp_path / "advisories.yaml"
    bad.write_text(f"advisories:\n  - {entry}\n")
    done = _run("--lock", str(LOCK), "--advisories", str(bad))
    assert done.returncode == 2
    assert message in done.stderr
