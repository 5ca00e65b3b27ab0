"""checkov over infra/ reports no failed check and no file it could not parse.

Checks that do not apply are skipped inline next to the resource, with the reason; the few on files
that cannot hold a comment are in infra/.checkov.yaml, with the reason. checkov exits 0 when a file
does not parse, so its JSON report is read instead of trusting the exit code.
"""

from __future__ import annotations

import json
import subprocess

from infra_support import INFRA, REPO_ROOT, infra_tool


def test_checkov_reports_no_failure_and_no_parse_error() -> None:
    checkov = infra_tool("checkov")
    completed = subprocess.run(
        [str(checkov), "-d", str(INFRA), "--config-file", str(INFRA / ".checkov.yaml"), "--output", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
        check=False,
    )
    try:
        reports = json.loads(completed.stdout)
    except ValueError as error:
        raise AssertionError(
            f"checkov printed no JSON report (exit {completed.returncode}):\n{completed.stderr[-3000:]}"
        ) from error
    reports = reports if isinstance(reports, list) else [reports]
    by_type = {report["check_type"]: report for report in reports}
    assert "bicep" in by_type, f"checkov scanned no Bicep file: {sorted(by_type)}"

    problems = []
    for check_type, report in by_type.items():
        results = report["results"]
        for path in results.get("parsing_errors", []):
            problems.append(f"{check_type}: could not parse {path}")
        for failed in results.get("failed_checks", []):
            problems.append(
                f"{check_type}: {failed['check_id']} {failed['check_name']}"
                f" — {failed['resource']} in {failed['file_path']}"
            )
        for skipped in results.get("skipped_checks", []):
            reason = (skipped.get("check_result") or {}).get("suppress_comment", "").strip()
            if not reason or reason == "No comment provided":
                problems.append(
                    f"{check_type}: {skipped['check_id']} on {skipped['resource']} is skipped without a reason"
                )
    assert not problems, "checkov:\n" + "\n".join(problems)
    assert completed.returncode == 0, completed.stderr[-3000:]

    assert by_type["bicep"]["summary"]["resource_count"] > 0, "checkov found no Bicep resource"
