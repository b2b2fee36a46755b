"""``gateway contracts check`` as CI runs it: the CLI, real git, real files.

- this repository against the committed baseline (contracts/BASELINE) has no breaking change;
- in a scratch repository, a field removed from a contract makes the command fail (exit 1)
  naming the field and the party, and an added optional field passes (exit 0);
- an unknown revision or a folder outside git is an operator error (exit 2) saying what to do.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.compat.command import baseline

ROOT = Path(__file__).resolve().parents[2]
GIT = shutil.which("git")


def test_git_is_installed() -> None:
    """CI always has git: the guard is never skipped for want of it."""
    assert GIT is not None, "git is not installed: the contract guard cannot run"


def gateway(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(cwd)},
    )


def git(cwd: Path, *args: str) -> None:
    subprocess.run(
        [str(GIT), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def test_the_repository_breaks_no_one_against_the_committed_baseline() -> None:
    ref = baseline(ROOT)
    done = gateway("contracts", "check", "--root", str(ROOT), "--breaking-only", cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"no breaking change against {ref}" in done.stdout


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A git repository holding a copy of the envelope schema and the hukou contract."""
    for folder in ("envelope", "hukou"):
        (tmp_path / "contracts" / folder).mkdir(parents=True)
    shutil.copy(ROOT / "contracts/envelope/envelope.schema.json", tmp_path / "contracts/envelope")
    for name in ("hukou.wsdl", "hukou.xsd"):
        shutil.copy(ROOT / "contracts/hukou" / name, tmp_path / "contracts/hukou")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "released contracts")
    return tmp_path


def test_a_removed_field_fails_naming_the_field_and_the_party(scratch: Path) -> None:
    xsd = scratch / "contracts/hukou/hukou.xsd"
    text = xsd.read_text(encoding="utf-8")
    line = next(ln for ln in text.splitlines() if 'name="MarriageCertificateNo"' in ln)
    xsd.write_text(text.replace(line, ""), encoding="utf-8")
    done = gateway("contracts", "check", "--against", "HEAD", "--root", str(scratch), cwd=scratch)
    assert done.returncode == 1, done.stdout + done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith("BREAKING  department hukou: contracts/hukou/hukou.xsd ")
    assert "/MarriageCertificateNo: element removed (or renamed)" in first
    assert "breaking change(s) against HEAD" in done.stdout.splitlines()[-1]


def test_an_envelope_field_made_required_fails_naming_portals(scratch: Path) -> None:
    path = scratch / "contracts/envelope/envelope.schema.json"
    schema = json.loads(path.read_text(encoding="utf-8"))
    schema["$defs"]["NewbornSubjects"]["required"].append("father")
    path.write_text(json.dumps(schema), encoding="utf-8")
    done = gateway("contracts", "check", "--against", "HEAD", "--root", str(scratch), cwd=scratch)
    assert done.returncode == 1
    assert "BREAKING  portals: contracts/envelope/envelope.schema.json" in done.stdout
    assert "NewbornEnvelope.subjects.father: field made required" in done.stdout


def test_an_added_optional_field_passes(scratch: Path) -> None:
    path = scratch / "contracts/envelope/envelope.schema.json"
    schema = json.loads(path.read_text(encoding="utf-8"))
    schema["$defs"]["Applicant"]["properties"]["email"] = {"type": "string", "maxLength": 100}
    path.write_text(json.dumps(schema), encoding="utf-8")
    done = gateway("contracts", "check", "--against", "HEAD", "--root", str(scratch), cwd=scratch)
    assert done.returncode == 0, done.stdout
    assert done.stdout.startswith("additive  portals: contracts/envelope/envelope.schema.json ")
    assert "applicant.email (and 8 more places): new optional field" in done.stdout


def test_an_unknown_revision_says_how_to_fetch_it(scratch: Path) -> None:
    done = gateway("contracts", "check", "--against", "v9.9", "--root", str(scratch), cwd=scratch)
    assert done.returncode == 2
    assert "unknown git revision 'v9.9'" in done.stderr and "fetch-depth: 0" in done.stderr


def test_outside_a_git_checkout_it_says_so(tmp_path: Path) -> None:
    (tmp_path / "contracts").mkdir()
    done = gateway("contracts", "check", "--against", "HEAD", "--root", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2
    assert "is not a git checkout" in done.stderr


def test_the_baseline_file_may_carry_comments(tmp_path: Path) -> None:
    (tmp_path / "contracts").mkdir()
    (tmp_path / "contracts/BASELINE").write_text(
        "# released contracts, see README\n\n  abc123 released 2026-11\n", encoding="utf-8"
    )
    assert baseline(tmp_path) == "abc123"
