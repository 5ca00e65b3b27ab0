"""Parameters of main.bicep that decide whether `azd up` works at all: the region, and what azd must
be able to fill without asking (`azd up --no-prompt`)."""

from __future__ import annotations

import json
import re
from typing import Any

from infra_support import INFRA, REPO_ROOT, decorator, has_default, module_body, resource_body


def _deploy_section() -> str:
    return (REPO_ROOT / "docs" / "deploy.md").read_text()


def test_location_is_limited_to_flex_consumption_regions(main_template: dict[str, Any]) -> None:
    location = main_template["parameters"]["location"]
    regions = decorator(location, "allowed")
    assert regions, "location needs @allowed with the regions that offer Flex Consumption"
    assert all(re.fullmatch(r"[a-z]+[0-9]?", region) for region in regions), "ARM region names: lowercase, no spaces"
    assert regions == sorted(set(regions)), "keep the list sorted and without duplicates"
    # Regions Flex Consumption has offered from its first release, and the ones the deploy manual suggests.
    assert {"eastus", "eastus2", "swedencentral", "westeurope", "australiaeast"} <= set(regions)
    examples = [
        next(part for part in match if part)
        for match in re.findall(r"AZURE_LOCATION (\w+)|--location (\w+)|location=(\w+)", _deploy_section())
    ]
    assert examples, "the deploy section shows the region in its commands"
    for region in examples:
        assert region in regions, f"docs/deploy.md deploys to {region}, which location does not allow"
    # azd still offers its region picker, filtered to the allowed ones.
    assert decorator(location, "metadata") == {"azd": {"type": "location"}}


def _parameters_file() -> dict[str, Any]:
    parameters: dict[str, Any] = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    return parameters


def test_publisher_email_needs_no_prompt(main_template: dict[str, Any]) -> None:
    # `azd up --no-prompt` stops at any parameter azd would have to ask for.
    email = main_template["parameters"]["apimPublisherEmail"]
    assert has_default(email) and re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]+", email["default"])
    assert _parameters_file()["apimPublisherEmail"]["value"] == "${AZURE_APIM_PUBLISHER_EMAIL=" + email["default"] + "}"


def test_azd_defaults_agree_with_the_bicep_defaults(main_template: dict[str, Any]) -> None:
    # `${VARIABLE=default}` applies when the azd environment lacks the variable; it must not differ
    # from what the same deployment does with the Azure CLI.
    checked = 0
    for name, entry in _parameters_file().items():
        match = re.fullmatch(r"\$\{[A-Z0-9_]+=([^}]*)\}", entry["value"])
        parameter = main_template["parameters"][name]
        if match and has_default(parameter):
            default = parameter["default"]
            expected = str(default).lower() if isinstance(default, bool) else str(default)
            assert match.group(1) == expected, (
                f"{name}: {match.group(1)!r} in main.parameters.json, {expected!r} in main.bicep"
            )
            checked += 1
    assert checked >= 4


def test_key_vault_name_can_be_reused_after_azd_down(templates: dict[str, dict[str, Any]]) -> None:
    # The vault name is fixed per environment; a purge-protected vault keeps it taken for 90 days
    # after `azd down`, so purge protection is opt-in and `azd down --purge` frees the name.
    main = templates["main.bicep"]
    assert main["parameters"]["keyVaultPurgeProtection"]["default"] is False
    assert module_body(main["modules"]["keyVault"])["params"]["purgeProtection"] == "keyVaultPurgeProtection"
    vault = resource_body(templates["app/keyvault.bicep"]["resources"]["vault"])["properties"]
    assert vault["enableSoftDelete"] is True
    # The API rejects false on a vault that has purge protection: leave it unset (null) instead.
    assert vault["enablePurgeProtection"] == {
        "operator": {
            "type": "conditional",
            "operands": {"condition": "purgeProtection", "true_value": True, "false_value": None},
        }
    }
    section = _deploy_section()
    for needle in ("azd down --purge", "az keyvault purge", "az keyvault recover", "KEY_VAULT_PURGE_PROTECTION"):
        assert needle in section, f"the deploy section must say how to get past a soft-deleted vault: {needle}"
