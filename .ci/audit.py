"""Audit the lock file: pip-audit where advisory data is reachable, the project's own list always.

``pip-audit`` on this workplace's machines reaches no advisory service: a plain run skips every package
("Dependency not found on PyPI and could not be audited") and still ends with "No known vulnerabilities
found". So this script never trusts a plain run:

1. It always checks every pin in the lock against ``.ci/advisories.yaml``, the advisory list the project
   keeps (package, affected PEP 440 ranges, advisory id, first fixed version). A lock line that is not an
   exact ``name==version`` pin cannot be checked and fails the audit; so does a locked version inside an
   affected range.
2. It probes pip-audit with one known pin (``--strict``, so a skipped package is a failure). Only when the
   probe succeeds, i.e. advisories are really reachable, does it run ``pip-audit --strict`` over the whole
   lock; a finding or a skipped package there fails the audit too. ``--offline`` skips the probe.

Usage: ``python .ci/audit.py [--lock requirements/lock.txt] [--advisories .ci/advisories.yaml] [--offline]``.
Exit code 0 when clean, 1 on a finding or a package that cannot be checked, 2 on a malformed input file.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LOCK = ROOT / "requirements" / "lock.txt"
DEFAULT_ADVISORIES = ROOT / ".ci" / "advisories.yaml"
# A pin whose current advisories are known to be none; used only to learn whether pip-audit reaches data.
PROBE_PIN = "jinja2==3.1.6"
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(?P<version>[^\s;\\]+)")


class AuditInputError(ValueError):
    """The lock or the advisory list is malformed (names the file and the line or entry)."""


@dataclass(frozen=True)
class Advisory:
    """One advisory: ``package`` is affected in any of ``affected``; ``fixed_in`` is the first fixed release."""

    package: str
    affected: tuple[SpecifierSet, ...]
    id: str
    fixed_in: str | None
    summary: str

    def matches(self, version: Version) -> bool:
        return any(spec.contains(version, prereleases=True) for spec in self.affected)


@dataclass(frozen=True)
class Finding:
    package: str
    version: str
    advisory: Advisory


def parse_lock(path: Path) -> tuple[dict[str, Version], list[str]]:
    """Exact pins of a pip requirements lock, and the requirement lines that are not exact pins.

    Continuation lines (``--hash=...``), comments and blank lines are skipped; an option line other than
    ``--hash`` (``-e``, ``--index-url``, a URL or path requirement) is reported as uncheckable.
    """
    pins: dict[str, Version] = {}
    uncheckable: list[str] = []
    for lineno, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip().rstrip("\\").strip()
        if not line or line.startswith("#") or line.startswith("--hash"):
            continue
        match = _PIN.match(line)
        if match is None:
            uncheckable.append(f"{path.name}:{lineno}: {line}")
            continue
        try:
            pins[canonicalize_name(match["name"])] = Version(match["version"])
        except InvalidVersion:
            uncheckable.append(f"{path.name}:{lineno}: {line} (not a PEP 440 version)")
    return pins, uncheckable


def load_advisories(path: Path) -> list[Advisory]:
    """Read the advisory list; every entry needs package, affected, id and a fixed_in outside the range."""
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("advisories"), list):
        raise AuditInputError(f"{path}: expected a mapping with an 'advisories' list")
    advisories = []
    for i, entry in enumerate(data["advisories"]):
        where = f"{path}: advisories[{i}]"
        if not isinstance(entry, dict):
            raise AuditInputError(f"{where}: not a mapping")
        missing = [key for key in ("package", "affected", "id") if not entry.get(key)]
        if missing:
            raise AuditInputError(f"{where} ({entry.get('id', '?')}): missing {', '.join(missing)}")
        ranges = entry["affected"] if isinstance(entry["affected"], list) else [entry["affected"]]
        try:
            specs = tuple(SpecifierSet(str(r)) for r in ranges)
        except InvalidSpecifier as exc:
            raise AuditInputError(f"{where} ({entry['id']}): bad affected range: {exc}") from exc
        fixed = entry.get("fixed_in")
        advisory = Advisory(
            package=canonicalize_name(str(entry["package"])),
            affected=specs,
            id=str(entry["id"]),
            fixed_in=None if fixed is None else str(fixed),
            summary=str(entry.get("summary", "")),
        )
        if advisory.fixed_in is not None and advisory.matches(Version(advisory.fixed_in)):
            raise AuditInputError(
                f"{where} ({advisory.id}): fixed_in {advisory.fixed_in} lies in its own range"
            )
        advisories.append(advisory)
    return advisories


def check(pins: dict[str, Version], advisories: list[Advisory]) -> list[Finding]:
    """Every (locked package, advisory) pair whose locked version lies in an affected range."""
    return [
        Finding(adv.package, str(pins[adv.package]), adv)
        for adv in advisories
        if adv.package in pins and adv.matches(pins[adv.package])
    ]


def offline_audit(lock: Path, advisories_path: Path) -> int:
    """Check the lock against the project's advisory list; print the counts; return the exit code."""
    pins, uncheckable = parse_lock(lock)
    advisories = load_advisories(advisories_path)
    findings = check(pins, advisories)
    covered = sorted({a.package for a in advisories} & set(pins))
    listed_not_locked = sorted({a.package for a in advisories} - set(pins))
    print(
        f"offline audit: {len(pins)} locked packages checked against {len(advisories)} advisories "
        f"({len({a.package for a in advisories})} packages listed); {len(covered)} locked packages have "
        f"entries, {len(pins) - len(covered)} have none in the list"
    )
    if listed_not_locked:
        print(f"  listed but not locked (not checked here): {', '.join(listed_not_locked)}")
    for line in uncheckable:
        print(f"  CANNOT CHECK {line}: not an exact name==version pin")
    for f in findings:
        fix = f"fixed in {f.advisory.fixed_in}" if f.advisory.fixed_in else "no fixed release"
        print(f"  VULNERABLE {f.package}=={f.version}: {f.advisory.id} ({fix}) {f.advisory.summary}")
    if not pins:
        print(f"  {lock}: no pins found")
        return 1
    return 1 if findings or uncheckable else 0


def _pip_audit() -> list[str] | None:
    exe = shutil.which("pip-audit", path=str(Path(sys.executable).parent)) or shutil.which("pip-audit")
    return [exe] if exe else None


def advisories_reachable(pip_audit: list[str]) -> bool:
    """True when ``pip-audit --strict`` can audit one known pin, i.e. it really reaches advisory data."""
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.txt"
        probe.write_text(PROBE_PIN + "\n")
        cmd = [
            *pip_audit,
            "--strict",
            "--no-deps",
            "--disable-pip",
            "--progress-spinner",
            "off",
            "-r",
            str(probe),
        ]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            return False
    # rc 0: audited, nothing found. rc 1 with "Found N known vulnerabilit..": audited, data reachable. Any
    # other failure ("could not be audited", a connection error) means the data is not reachable.
    return done.returncode == 0 or re.search(r"^Found \d+ known vulnerabilit", done.stdout, re.M) is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=Path, default=DEFAULT_LOCK)
    parser.add_argument("--advisories", type=Path, default=DEFAULT_ADVISORIES)
    parser.add_argument("--offline", action="store_true", help="skip pip-audit; use only the advisory list")
    args = parser.parse_args(argv)
    try:
        status = offline_audit(args.lock, args.advisories)
    except (AuditInputError, OSError, yaml.YAMLError) as exc:
        print(f"audit: {exc}", file=sys.stderr)
        return 2
    if args.offline:
        return status
    pip_audit = _pip_audit()
    if pip_audit is None:
        print("pip-audit: not installed; the offline list above is the whole audit")
    elif not advisories_reachable(pip_audit):
        print(
            "pip-audit: no advisory data reachable (a --strict probe of one pin failed); "
            "the offline list above is the whole audit"
        )
    else:
        print("pip-audit: advisory data reachable; auditing every locked pin with --strict")
        cmd = [*pip_audit, "--strict", "--disable-pip", "--progress-spinner", "off", "-r", str(args.lock)]
        status = max(status, 1 if subprocess.run(cmd).returncode else 0)
    return status


if __name__ == "__main__":
    sys.exit(main())
