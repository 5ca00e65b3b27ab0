"""host.json, azure.yaml, .funcignore and the deployment manual (docs/deploy.md) say what they must."""

from __future__ import annotations

import json
import re

from infra_support import INFRA, REPO_ROOT


def test_host_json_is_a_deliberate_functions_v4_python_host() -> None:
    host = json.loads((REPO_ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    # The host's request telemetry is OpenTelemetry, so the worker's spans join its trace (one operation id).
    assert host["telemetryMode"] == "OpenTelemetry"
    assert host["extensions"]["http"]["routePrefix"] == ""
    assert host["extensionBundle"] == {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"}
    sampling = host["logging"]["applicationInsights"]["samplingSettings"]
    assert sampling["isEnabled"] is True
    assert "Request" in sampling["excludedTypes"], "requests must not be sampled: they are the service's SLI"
    hours, minutes, seconds = (int(part) for part in host["functionTimeout"].split(":"))
    assert 0 < hours * 3600 + minutes * 60 + seconds <= 600, (
        "a bounded timeout (the HTTP front end gives up after 230 s)"
    )


def test_azure_yaml_deploys_the_function_app_with_bicep() -> None:
    text = (REPO_ROOT / "azure.yaml").read_text()
    assert re.search(r"^infra:\n  provider: bicep\n  path: infra\n", text, re.M)
    assert re.search(r"^services:\n  api:\n    project: \.\n    language: python\n    host: function\n", text, re.M)
    # azd finds the app by this tag; the service name and the tag must agree.
    assert "'azd-service-name': 'api'" in (INFRA / "app" / "function-app.bicep").read_text()


def test_funcignore_keeps_development_files_out_of_the_package() -> None:
    ignored = {
        line.strip()
        for line in (REPO_ROOT / ".funcignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for entry in (".venv/", ".git*", "local.settings.json", "tests/", "infra/", ".cache/", ".data/"):
        assert entry in ignored, f".funcignore must exclude {entry}"
    for needed in ("shared/", "functions/", "host.json", "requirements.txt", "function_app.py"):
        assert needed not in ignored, f".funcignore must not exclude {needed}"


def test_the_deploy_manual_covers_what_a_deployer_needs() -> None:
    text = (REPO_ROOT / "docs" / "deploy.md").read_text()
    for needle in (
        "Prerequisites",
        "azd up",
        "az deployment sub create",
        "main.parameters.json",
        "Flex Consumption",
        "Ocp-Apim-Subscription-Key",
        "curl",
        "cost",
    ):
        assert needle.lower() in text.lower(), f"the deploy section lacks {needle!r}"
    # Every main.bicep parameter is documented.
    declared = re.findall(r"^param (\w+)", (INFRA / "main.bicep").read_text(), re.M)
    undocumented = [name for name in declared if f"`{name}`" not in text]
    assert not undocumented, f"parameters missing from docs/deploy.md: {undocumented}"
