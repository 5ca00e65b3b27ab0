"""Role assignments: all in rbac.bicep, deterministic names, and exactly the roles each identity needs."""

from __future__ import annotations

from typing import Any

from infra_support import INFRA, resource_body, strings

ROLE_NAMES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd": "Cognitive Services OpenAI User",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}


def _assignments(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: resource
        for name, resource in (template.get("resources") or {}).items()
        if resource["type"] == "Microsoft.Authorization/roleAssignments"
    }


def _roles_of(template: dict[str, Any], principal: str) -> set[str]:
    role_ids = template["variables"]["roles"]["value"]
    granted = set()
    for resource in _assignments(template).values():
        properties = resource_body(resource)["properties"]
        if properties["principalId"] == principal:
            keys = [
                text.split(".", 1)[1] for text in strings(properties["roleDefinitionId"]) if text.startswith("roles.")
            ]
            keys += [text for text in strings(properties["roleDefinitionId"]) if text in role_ids]
            granted |= {ROLE_NAMES[role_ids[key]] for key in keys}
    return granted


def test_role_assignments_live_in_rbac_bicep_only(templates: dict[str, dict[str, Any]]) -> None:
    elsewhere = [path for path, template in templates.items() if path != "app/rbac.bicep" and _assignments(template)]
    assert elsewhere == []
    assert "roleAssignments" not in (INFRA / "main.bicep").read_text()


def test_role_assignment_names_are_guids(templates: dict[str, dict[str, Any]]) -> None:
    for name, resource in _assignments(templates["app/rbac.bicep"]).items():
        assert resource_body(resource)["name"]["function"]["type"] == "guid", f"{name} must be named with guid(...)"


def test_function_identity_gets_exactly_its_roles(templates: dict[str, dict[str, Any]]) -> None:
    assert _roles_of(templates["app/rbac.bicep"], "functionPrincipalId") == set(ROLE_NAMES.values())


def test_apim_identity_only_reads_secrets(templates: dict[str, dict[str, Any]]) -> None:
    assert _roles_of(templates["app/rbac.bicep"], "apimPrincipalId") == {"Key Vault Secrets User"}


def test_developer_roles_are_optional_and_keyless(templates: dict[str, dict[str, Any]]) -> None:
    rbac = templates["app/rbac.bicep"]
    roles = _roles_of(rbac, "developerPrincipalId")
    assert roles == {
        "Storage Table Data Contributor",
        "Cognitive Services OpenAI User",
        "Key Vault Secrets User",
        "Monitoring Metrics Publisher",
    }
    for resource in _assignments(rbac).values():
        if resource_body(resource)["properties"]["principalId"] == "developerPrincipalId":
            assert "condition" in resource["config"], "developer roles must depend on principalId being set"
