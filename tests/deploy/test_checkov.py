"""checkov scans deploy.json: no failed check except the listed skips, and no stale skip."""
import json
import os
import shutil
import subprocess
from pathlib import Path

from template_support import ROOT


def listed_skips() -> dict[str, str]:
    skips = {}
    for line in (ROOT / "tests" / "deploy" / "checkov-skips.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            check, reason = line.split(None, 1)
            skips[check] = reason
    return skips


def checkov_binary() -> str:
    # checkov lives in its own venv (tests/requirements-checkov.txt pins it); fail, never skip,
    # if it is missing.
    local = ROOT / ".tools" / "checkov" / "bin" / "checkov"
    found = os.environ.get("CHECKOV_BIN") or (str(local) if local.exists() else shutil.which("checkov"))
    assert found, "checkov is not installed: run scripts/test.sh, which installs it into .tools/checkov"
    return found


def test_checkov_finds_nothing_but_the_listed_skips():
    skips = listed_skips()
    assert all(len(reason) > 20 for reason in skips.values()), "every skip needs its reason"
    run = subprocess.run(
        [checkov_binary(), "-f", "deploy.json", "--framework", "arm", "-o", "json", "--quiet",
         "--compact"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"},
    )
    assert run.stdout.strip(), f"checkov printed nothing: {run.stderr[-2000:]}"
    report = json.loads(run.stdout)
    report = report[0] if isinstance(report, list) else report
    summary = report["summary"]
    print(f"checkov {summary['checkov_version']}: {summary['passed']} passed, "
          f"{summary['failed']} failed (all listed), {summary['resource_count']} resources")
    assert summary["parsing_errors"] == 0
    assert summary["passed"] >= 15, "checkov evaluated suspiciously few checks"
    failed = {c["check_id"] for c in report["results"]["failed_checks"]}
    unlisted = sorted(failed - set(skips))
    stale = sorted(set(skips) - failed)
    assert unlisted == [], f"checkov failed checks that are not listed: {unlisted}"
    assert stale == [], f"listed skips that now pass; remove them: {stale}"
