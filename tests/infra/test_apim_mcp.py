"""API Management in front of the MCP server, and the caller headers of both APIs: the MCP API and its
operations, its policy as deployed (client caller headers deleted, then the tenant from the
subscription, the user from a validated token, the signature, the MCP extension key and the managed-
identity token), the MCP extension key and the signing key wired from one deployment value each to
the app and to APIM, and the rule that end users cannot be bound without a token audience."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from apim_policies import APIM_API, POLICIES, render_policy
from infra_support import INFRA, decorator, has_default, is_secure, module_body, resource_body, strings

from shared.caller_signature import SIGNATURE_HEADER

USERS_ON = {
    "userHeader": "x-memory-user",
    "userTokenAudience": "api://memory-layer",
    "userTokenIssuer": "https://login.example/tenant/v2.0",
    "userTokenOpenIdConfigUrl": "https://login.example/tenant/v2.0/.well-known/openid-configuration",
}


def _apim_api(templates: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return templates["app/apim-api.bicep"]


def _caller_part(inbound: ET.Element) -> list[str]:
    """The caller-identity elements of an inbound section, serialized, in order."""
    return [
        ET.tostring(child, encoding="unicode").strip()
        for child in inbound
        if child.tag in {"set-header", "set-variable", "validate-jwt"} and child.get("name") not in {"x-functions-key"}
    ]


def test_the_mcp_endpoint_is_published_as_a_passthrough_api_in_the_product(
    templates: dict[str, dict[str, Any]],
) -> None:
    resources = _apim_api(templates)["resources"]
    api = resource_body(resources["mcpApi"])
    assert api["properties"]["path"] == "mcpApiPath"
    assert _apim_api(templates)["parameters"]["mcpApiPath"]["default"] == "memory-mcp"
    assert api["properties"]["serviceUrl"] == "https://${functionApp.properties.defaultHostName}/runtime/webhooks"
    assert api["properties"]["subscriptionRequired"] is True and api["properties"]["protocols"] == ["https"]
    # Streamable HTTP: POST, GET and DELETE on the one path, /<mcpApiPath>/mcp -> /runtime/webhooks/mcp.
    operations = resources["mcpOperations"]
    assert operations["type"] == "Microsoft.ApiManagement/service/apis/operations"
    assert operations["config"]["loop_type"]["detail"]["array_name"] == "mcpMethods"
    assert _apim_api(templates)["variables"]["mcpMethods"]["value"] == ["POST", "GET", "DELETE"]
    body = operations["config"]["config"]
    assert body["parent"] == "mcpApi" and body["properties"]["urlTemplate"] == "/mcp"
    assert body["properties"]["method"] == "method"
    # The same product as the REST API: same subscription keys, limits and tenant.
    assert "mcpApi" in set(strings(resource_body(resources["productMcpApi"])["name"]))
    assert resource_body(resources["productMcpApi"])["parent"] == "product"
    assert "${apimApi.outputs.mcpApiPath}/mcp" in str(templates["main.bicep"]["outputs"]["APIM_MCP_URL"])


@pytest.mark.parametrize("users", [{}, USERS_ON], ids=["tenant only", "tenant and end users"])
def test_the_mcp_policy_sets_sign_and_authenticates_like_the_rest_policy(
    users: dict[str, str], main_template: dict[str, Any]
) -> None:
    mcp = render_policy("mcp-api.xml", main_template, **users).find("inbound")
    rest = render_policy("api.xml", main_template, **users).find("inbound")
    assert mcp is not None and rest is not None
    # One caller identity for both APIs: a tool call carries what its REST twin carries.
    assert _caller_part(mcp) == _caller_part(rest)
    order = list(mcp)

    def at(path: str) -> int:
        element = mcp.find(path)
        assert element is not None, path
        return order.index(element)

    # Client-sent caller headers are deleted first, then the policy's own are set, then signed.
    deletes = [
        at(f"set-header[@name='{name}'][@exists-action='delete']") for name in ("x-memory-tenant", "x-memory-user")
    ]
    deletes.append(at(f"set-header[@name='{SIGNATURE_HEADER}'][@exists-action='delete']"))
    tenant = at("set-header[@name='x-memory-tenant'][@exists-action='override']")
    variable = mcp.find("set-variable[@name='callerTenant']")
    assert variable is not None and variable.get("value") == "@(context.Subscription.Id)"
    assert order[tenant].findtext("value") == "@(context.Subscription.Id)"
    signature = at(f"set-header[@name='{SIGNATURE_HEADER}'][@exists-action='override']")
    assert at("base") < max(deletes) < tenant < signature
    if users:
        jwt, user = at("validate-jwt"), at("set-header[@name='x-memory-user'][@exists-action='override']")
        assert tenant < jwt < user < signature
        assert mcp.find("set-variable[@name='callerUser']") is not None
    else:
        assert mcp.find("validate-jwt") is None
        assert mcp.find("set-header[@name='x-memory-user'][@exists-action='override']") is None
    # Then the MCP extension's key and API Management's own token, as for the REST API.
    key = mcp.find("set-header[@name='x-functions-key']")
    assert key is not None and key.get("exists-action") == "override"
    assert key.findtext("value") == "{{mcp-extension-key}}"
    token = mcp.find("authentication-managed-identity")
    assert token is not None
    assert token.get("resource") == "__FUNCTION_APP_AUDIENCE__"
    assert token.get("client-id") == "__APIM_IDENTITY_CLIENT_ID__"
    assert signature < order.index(key) < order.index(token)
    # Event streams pass through unbuffered; gateway errors use the API's envelope.
    forward = render_policy("mcp-api.xml", main_template).find("backend/forward-request")
    assert forward is not None and forward.get("buffer-response") == "false"
    on_error = render_policy("mcp-api.xml", main_template).find("on-error/set-body")
    assert on_error is not None and '"request_id"' in (on_error.text or "")


def test_the_signature_signs_what_the_app_checks() -> None:
    text = (POLICIES / "caller-signature.xml").read_text()
    expression = ET.fromstring(text[text.index("<set-header") :]).findtext("value") or ""
    compact = re.sub(r"\s+", "", expression)
    # shared/caller_signature.py: HMAC-SHA256 of "v1\n<tenant>\n<user>\n<unix seconds>", base64, "t=..,v1=..".
    key_bytes = 'Encoding.UTF8.GetBytes((string)context.Variables["callerSigningKey"])'
    assert f"newSystem.Security.Cryptography.HMACSHA256({key_bytes})" in compact
    assert '"v1\\n"+tenant+"\\n"+user+"\\n"+issued' in compact
    assert 'return"t="+issued+",v1="+Convert.ToBase64String(mac);' in compact
    assert 'GetValueOrDefault("callerTenant","")' in compact and 'GetValueOrDefault("callerUser","")' in compact
    assert "newDateTime(1970,1,1,0,0,0,DateTimeKind.Utc)" in compact and "TotalSeconds" in compact
    # The variables hold exactly what the headers are set to.
    for name, variable in (("tenant-header.xml", "callerTenant"), ("user-header.xml", "callerUser")):
        fragment = ET.fromstring(f"<f>{(POLICIES / name).read_text()}</f>")
        assigned = fragment.find(f"set-variable[@name='{variable}']")
        header = fragment.find("set-header/value")
        assert assigned is not None and header is not None and assigned.get("value") == header.text, name


def test_the_signing_key_reaches_the_app_and_apim_from_one_secret(templates: dict[str, dict[str, Any]]) -> None:
    main = templates["main.bicep"]
    parameter = main["parameters"]["callerSigningKey"]
    assert is_secure(parameter) and not has_default(parameter) and decorator(parameter, "min_length") >= 32
    assert decorator(parameter, "metadata")["azd"]["type"] == "generate"
    assert module_body(main["modules"]["keyVault"])["params"]["callerSigningKey"] == "callerSigningKey"
    secret = resource_body(templates["app/keyvault.bicep"]["resources"]["callerSigningKeySecret"])
    assert secret["name"] == "caller-signing-key" and secret["properties"]["value"] == "callerSigningKey"
    for module in ("functionApp", "apimApi"):
        uri = module_body(main["modules"][module])["params"]["callerSigningKeySecretUri"]
        assert "callerSigningKeySecretUri" in set(strings(uri)) and "keyVault" in set(strings(uri)), module
    # The app: a Key Vault reference, whenever a caller header is on.
    signing = templates["app/function-app.bicep"]["variables"]["signingSettings"]["value"]["operator"]["operands"]
    assert signing["true_value"] == {}
    assert signing["false_value"] == {
        "CALLER_SIGNING_KEY": "@Microsoft.KeyVault(SecretUri=${callerSigningKeySecretUri})"
    }
    assert {"tenantHeader", "userHeader"} <= set(strings(signing["condition"]))
    # APIM: a secret named value read from the same secret.
    named = resource_body(_apim_api(templates)["resources"]["callerSigningKeyNamedValue"])
    assert named["name"] == "caller-signing-key" and named["properties"]["secret"] is True
    assert named["properties"]["keyVault"]["secretIdentifier"] == "callerSigningKeySecretUri"
    assert "value" not in named["properties"]


def test_the_mcp_extension_key_is_declared_on_the_app_and_kept_in_key_vault(
    templates: dict[str, dict[str, Any]],
) -> None:
    resources = _apim_api(templates)["resources"]
    key = resources["mcpSystemKey"]
    assert key["type"] == "Microsoft.Web/sites/host/systemkeys"
    assert resource_body(key) == {
        "name": "${functionApp.name}/default/mcp_extension",
        "properties": {"name": "mcp_extension", "value": "mcpExtensionKey"},
    }
    secret = resource_body(resources["mcpKeySecret"])
    assert secret["name"] == "mcp-extension-key" and secret["properties"]["value"] == "mcpExtensionKey"
    named = resource_body(resources["mcpKeyNamedValue"])
    assert named["name"] == "mcp-extension-key" and named["properties"]["secret"] is True
    assert "mcpKeySecret" in set(strings(named["properties"]["keyVault"]["secretIdentifier"]))
    assert "mcpSystemKey" in named["dependsOn"]  # the app has the key before APIM sends it
    assert {"mcpKeyNamedValue", "callerSigningKeyNamedValue"} <= set(
        resource_body(resources["mcpApiPolicy"])["dependsOn"]
    )
    # One generated deployment value, never read back from the app (listKeys fails before code runs).
    main = templates["main.bicep"]
    parameter = main["parameters"]["mcpExtensionKey"]
    assert is_secure(parameter) and not has_default(parameter) and decorator(parameter, "min_length") >= 32
    generate = decorator(parameter, "metadata")["azd"]
    assert generate["type"] == "generate" and generate["config"]["noSpecial"] is True
    assert module_body(main["modules"]["apimApi"])["params"]["mcpExtensionKey"] == "mcpExtensionKey"
    assert "list_keys" not in str(_apim_api(templates)) and "listKeys" not in str(_apim_api(templates))


def test_end_users_cannot_be_bound_without_a_token_audience(templates: dict[str, dict[str, Any]]) -> None:
    # apim-api.bicep refuses an empty audience; main.bicep passes the real one whenever userHeader is
    # set, so `userHeader` with an empty `userTokenAudience` fails the deployment instead of
    # deploying a validate-jwt without an audience.
    parameter = _apim_api(templates)["parameters"]["userTokenAudience"]
    assert decorator(parameter, "min_length") == 1 and not has_default(parameter)
    passed = module_body(templates["main.bicep"]["modules"]["apimApi"])["params"]["userTokenAudience"]
    operands = passed["operator"]["operands"]
    assert passed["operator"]["type"] == "conditional"
    assert operands["condition"] == {"function": {"type": "empty", "parameters": {"item_to_test": "userHeader"}}}
    assert operands["false_value"] == "userTokenAudience"
    assert isinstance(operands["true_value"], str) and operands["true_value"] not in {"", "userTokenAudience"}
    # The stand-in is never used: without userHeader no validate-jwt is rendered at all.
    assert "empty(userHeader) ? '' : '${userTokenXml}${userHeaderXml}'" in APIM_API.read_text()
    assert (INFRA / "app" / "policies" / "user-token.xml").read_text().count("__USER_TOKEN_AUDIENCE__") == 1
