"""API Management: the policies as deployed (rate limit, quota, CORS, function key, error envelope),
the function key kept in Key Vault, and the API imported from the committed OpenAPI document."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from apim_policies import (
    APIM_API,
    CALLER_PLACEHOLDERS,
    PLACEHOLDERS,
    POLICIES,
    default,
    render_policy,
    render_product_policy,
)
from infra_support import decorator, has_default, is_secure, module_body, resource_body, strings


def _default(main_template: dict[str, Any], name: str) -> Any:
    return default(main_template, name)


def _render_api_policy(main_template: dict[str, Any], **caller: str) -> ET.Element:
    return render_policy("api.xml", main_template, **caller)


def test_bicep_fills_every_placeholder_from_the_matching_parameter(main_template: dict[str, Any]) -> None:
    bicep = APIM_API.read_text()
    for placeholder, parameter in PLACEHOLDERS.items():
        assert f"'{placeholder}', string({parameter})" in bicep
        # ...and main.bicep passes its own parameter of the same name.
        assert module_body(main_template["modules"]["apimApi"])["params"][parameter] == parameter
    compact = re.sub(r"\s+", "", bicep)
    assert "replace(loadTextContent('policies/api.xml'),'__CORS_ALLOWED_ORIGINS__',corsOriginsXml)" in compact
    assert "'__FUNCTION_APP_AUDIENCE__',functionAppAudience)" in compact
    assert "'__APIM_IDENTITY_CLIENT_ID__',apimIdentityClientId)" in compact
    assert "'__CALLER_IDENTITY__',callerIdentityXml),'__GATEWAY_ERRORS__',gatewayErrorsXml)" in compact
    api_placeholders = {"__CORS_ALLOWED_ORIGINS__", "__FUNCTION_APP_AUDIENCE__", "__APIM_IDENTITY_CLIENT_ID__"}
    for path in POLICIES.glob("*.xml"):
        filled = set(PLACEHOLDERS) | set(CALLER_PLACEHOLDERS) | {"__CALLER_IDENTITY__", "__GATEWAY_ERRORS__"}
        filled |= api_placeholders
        left = set(re.findall(r"__[A-Z_]+__", path.read_text())) - filled
        assert not left, f"{path.name} has placeholders Bicep does not fill: {left}"


def test_the_burst_limit_is_per_subscription_that_is_per_tenant(main_template: dict[str, Any]) -> None:
    inbound = render_product_policy("product.xml", main_template).find("inbound")
    assert inbound is not None
    limit = inbound.find("rate-limit-by-key")
    assert limit is not None, "product.xml must limit the call rate per key"
    # Keyed on the subscription (the tenant), not the client IP: a tenant cannot multiply its budget
    # by calling from many addresses, nor exhaust another tenant's behind a shared egress IP.
    assert limit.get("counter-key") == "@(context.Subscription.Id)"
    assert "IpAddress" not in (POLICIES / "product.xml").read_text()
    assert int(limit.get("calls", "0")) == _default(main_template, "rateLimitCalls") == 60
    assert int(limit.get("renewal-period", "0")) == _default(main_template, "rateLimitPeriodSeconds") == 60
    assert limit.get("retry-after-variable-name") == "retryAfterSeconds"
    for path in ("main.bicep", "app/apim-api.bicep"):
        text = (APIM_API.parent.parent / path).read_text()
        assert "per caller IP" not in text and "per subscription" in text, path


def test_consumption_tier_falls_back_to_per_subscription_rate_limit(main_template: dict[str, Any]) -> None:
    inbound = render_product_policy("product-consumption.xml", main_template).find("inbound")
    assert inbound is not None
    assert inbound.find("rate-limit-by-key") is None, "rate-limit-by-key is not available on the Consumption tier"
    limit = inbound.find("rate-limit")
    assert limit is not None
    assert int(limit.get("calls", "0")) == _default(main_template, "rateLimitCalls")
    assert (
        "apimSkuName == 'Consumption' ? loadTextContent('policies/product-consumption.xml')"
        " : loadTextContent('policies/product.xml')" in APIM_API.read_text()
    )


def test_rate_limit_period_is_within_what_api_management_accepts(templates: dict[str, dict[str, Any]]) -> None:
    # rate-limit and rate-limit-by-key reject a renewal-period over 300 s, and only when the policy is
    # saved, late in the deployment: both templates refuse such a value up front.
    for path in ("main.bicep", "app/apim-api.bicep"):
        parameter = templates[path]["parameters"]["rateLimitPeriodSeconds"]
        assert decorator(parameter, "min_value") == 1, path
        assert decorator(parameter, "max_value") == 300, path
    default = templates["main.bicep"]["parameters"]["rateLimitPeriodSeconds"]["default"]
    assert 1 <= default <= 300


@pytest.mark.parametrize("file_name", ["product.xml", "product-consumption.xml"])
def test_quota_per_subscription(file_name: str, main_template: dict[str, Any]) -> None:
    quota = render_product_policy(file_name, main_template).find("inbound/quota")
    assert quota is not None
    assert int(quota.get("calls", "0")) == _default(main_template, "quotaCalls") == 10000
    assert int(quota.get("renewal-period", "0")) == _default(main_template, "quotaPeriodSeconds") == 86400


def test_cors_allows_only_the_listed_origins(main_template: dict[str, Any]) -> None:
    cors = _render_api_policy(main_template).find("inbound/cors")
    assert cors is not None
    assert cors.get("allow-credentials") == "false"
    origins = [origin.text for origin in cors.findall("allowed-origins/origin")]
    assert origins == _default(main_template, "corsAllowedOrigins")
    assert "*" not in origins


def test_backend_call_carries_the_function_key_from_key_vault(
    templates: dict[str, dict[str, Any]], main_template: dict[str, Any]
) -> None:
    header = _render_api_policy(main_template).find("inbound/set-header[@name='x-functions-key']")
    assert header is not None and header.get("exists-action") == "override"
    value = header.find("value")
    assert value is not None and value.text == "{{function-key}}"

    resources = templates["app/apim-api.bicep"]["resources"]
    named_value = resource_body(resources["functionKeyNamedValue"])
    assert named_value["name"] == "function-key"
    assert named_value["properties"]["secret"] is True
    assert "value" not in named_value["properties"], "the key must come from Key Vault, not a plain value"
    assert "functionKeySecret" in list(strings(named_value["properties"]["keyVault"]["secretIdentifier"]))
    secret = resource_body(resources["functionKeySecret"])
    # Key Vault gets the very value the app's host key is declared with, not a read-back of the app.
    assert secret["properties"]["value"] == "functionHostKey"


def test_the_function_key_is_a_declared_host_key(
    templates: dict[str, dict[str, Any]], main_template: dict[str, Any]
) -> None:
    apim_api = templates["app/apim-api.bicep"]
    key = apim_api["resources"]["apimHostKey"]
    assert key["type"] == "Microsoft.Web/sites/host/functionKeys"
    body = resource_body(key)
    # <site>/default/<key name>: a host-level key of the app (not tied to a function).
    assert body["name"] == "${functionApp.name}/default/apim"
    assert body["properties"] == {"name": "apim", "value": "functionHostKey"}
    assert apim_api["resources"]["functionApp"]["existing"] is True
    # APIM starts sending the key only once the app has it.
    assert "apimHostKey" in resource_body(apim_api["resources"]["functionKeyNamedValue"])["dependsOn"]
    # Nothing reads keys back from the app any more.
    assert "listKeys" not in str(apim_api) and "list_func" not in str(apim_api)
    # The value is a secret parameter that azd generates once and keeps in the environment.
    for template in (apim_api, main_template):
        parameter = template["parameters"]["functionHostKey"]
        assert is_secure(parameter) and not has_default(parameter)
        assert decorator(parameter, "min_length") >= 32
    generate = decorator(main_template["parameters"]["functionHostKey"], "metadata")["azd"]
    assert generate["type"] == "generate" and generate["config"]["length"] >= 32
    # Function keys travel in a header: letters and digits only.
    assert generate["config"]["noSpecial"] is True
    assert module_body(main_template["modules"]["apimApi"])["params"]["functionHostKey"] == "functionHostKey"


def test_named_values_used_by_policies_exist(templates: dict[str, dict[str, Any]]) -> None:
    defined = {
        resource_body(resource)["name"]
        for resource in templates["app/apim-api.bicep"]["resources"].values()
        if resource["type"] == "Microsoft.ApiManagement/service/namedValues"
    }
    used = {name for path in POLICIES.glob("*.xml") for name in re.findall(r"\{\{([\w.-]+)\}\}", path.read_text())}
    assert used <= defined


def test_gateway_errors_use_the_api_error_envelope(main_template: dict[str, Any]) -> None:
    on_error = _render_api_policy(main_template).find("on-error")
    assert on_error is not None
    body = on_error.find("set-body")
    assert body is not None and body.text
    for field in ('"success", false', '"message"', '"error"', '"code"', '"details"', '"request_id"', '"timestamp"'):
        assert field in body.text, f"the error body lacks {field}"
    status = on_error.find("set-variable[@name='errorStatus']")
    assert status is not None
    for code in ("429", "401", "404", "503"):
        assert f"return {code};" in (status.get("value") or "")
    assert "500" not in (status.get("value") or ""), "never 500 for what a client can cause"
    assert on_error.find("choose/when/set-header[@name='Retry-After']") is not None


def test_api_is_imported_from_the_committed_openapi_document(templates: dict[str, dict[str, Any]]) -> None:
    api = resource_body(templates["app/apim-api.bicep"]["resources"]["api"])["properties"]
    assert api["format"] == "openapi+json"
    assert api["value"]["function"]["type"] == "load_text_content"
    assert api["value"]["function"]["parameters"]["file_path"] == "../openapi.json"
    assert api["subscriptionRequired"] is True
    assert api["protocols"] == ["https"]
    product = resource_body(templates["app/apim-api.bicep"]["resources"]["product"])["properties"]
    assert product["subscriptionRequired"] is True and product["approvalRequired"] is False


def test_apim_defaults_to_a_v2_tier(main_template: dict[str, Any]) -> None:
    assert _default(main_template, "apimSkuName").endswith("V2")
    assert "Consumption" in str(main_template["parameters"]["apimSkuName"]["decorators"])


def test_the_tenant_header_comes_from_the_subscription_and_overrides_the_client(
    templates: dict[str, dict[str, Any]], main_template: dict[str, Any]
) -> None:
    # On by default in the cloud: every subscription is its own tenant.
    assert _default(main_template, "tenantHeader") == "x-memory-tenant"
    inbound = _render_api_policy(main_template).find("inbound")
    assert inbound is not None
    header = inbound.find("set-header[@name='x-memory-tenant'][@exists-action='override']")
    assert header is not None
    value = header.find("value")
    assert value is not None and value.text == "@(context.Subscription.Id)"
    assert inbound.find("validate-jwt") is None, "end users are not bound unless userHeader is set"
    # ...and with tenantHeader empty, nothing names a tenant.
    off = _render_api_policy(main_template, tenantHeader="").find("inbound")
    assert off is not None and off.find("set-header[@name='x-memory-tenant'][@exists-action='override']") is None
    # ...but a tenant header a client sends is still deleted, and nothing is signed.
    assert off.find("set-header[@name='x-memory-tenant'][@exists-action='delete']") is not None
    assert off.find("set-header[@name='x-memory-signature'][@exists-action='override']") is None
    bicep = APIM_API.read_text()
    assert "empty(tenantHeader) ? '' : replace(loadTextContent('policies/tenant-header.xml')" in bicep
    assert "var callerIdentityXml = '${stripPolicyXml}${tenantPolicyXml}${userPolicyXml}${signaturePolicyXml}'" in bicep
    for parameter in CALLER_PLACEHOLDERS.values():
        assert f"'{_placeholder_of(parameter)}', {parameter})" in bicep, parameter


def _placeholder_of(parameter: str) -> str:
    return next(p for p, name in CALLER_PLACEHOLDERS.items() if name == parameter)


def test_end_users_are_bound_by_a_validated_token(main_template: dict[str, Any]) -> None:
    assert _default(main_template, "userHeader") == "", "end-user binding is opt-in"
    assert _default(main_template, "userTokenClaim") == "oid"
    values = {
        "userHeader": "x-memory-user",
        "userTokenAudience": "api://memory-layer",
        "userTokenIssuer": "https://login.example/tenant/v2.0",
        "userTokenOpenIdConfigUrl": "https://login.example/tenant/v2.0/.well-known/openid-configuration",
    }
    inbound = _render_api_policy(main_template, **values).find("inbound")
    assert inbound is not None
    children = [child.tag for child in inbound]
    jwt = inbound.find("validate-jwt")
    assert jwt is not None
    assert jwt.get("header-name") == "Authorization" and jwt.get("require-scheme") == "Bearer"
    assert jwt.get("failed-validation-httpcode") == "401"
    assert jwt.get("require-signed-tokens") == "true" and jwt.get("require-expiration-time") == "true"
    openid = jwt.find("openid-config")
    assert openid is not None and openid.get("url") == values["userTokenOpenIdConfigUrl"]
    assert [a.text for a in jwt.findall("audiences/audience")] == [values["userTokenAudience"]]
    assert [i.text for i in jwt.findall("issuers/issuer")] == [values["userTokenIssuer"]]
    assert [c.get("name") for c in jwt.findall("required-claims/claim")] == ["oid"]
    header = inbound.find("set-header[@name='x-memory-user'][@exists-action='override']")
    assert header is not None
    value = header.find("value")
    assert value is not None
    assert value.text == '@(((Jwt)context.Variables["endUserToken"]).Claims.GetValueOrDefault("oid", ""))'
    assert jwt.get("output-token-variable-name") == "endUserToken"
    # The token is checked before the user header is set, and both before the call is forwarded.
    order = list(inbound)
    assert children.index("base") < order.index(jwt) < order.index(header)
    assert order.index(header) < order.index(inbound.find("set-header[@name='x-functions-key']"))
    # A failed validation is the API's 401 envelope with code unauthenticated, not a 503.
    on_error = (POLICIES / "gateway-errors.xml").read_text()
    assert 'source == "validate-jwt"' in on_error and '"unauthenticated"' in on_error


def test_the_default_token_issuer_is_entra_id_of_this_directory(main_template: dict[str, Any]) -> None:
    authority = main_template["variables"]["entraAuthority"]["value"]
    found = set(strings(authority))
    assert any("loginEndpoint" in text for text in found) and any("tenantId" in text for text in found)
    params = module_body(main_template["modules"]["apimApi"])["params"]
    assert "entraAuthority" in set(strings(params["userTokenIssuer"]))
    assert "${entraAuthority}/.well-known/openid-configuration" in set(strings(params["userTokenOpenIdConfigUrl"]))
    for parameter in ("tenantHeader", "userHeader", "userTokenClaim"):
        assert params[parameter] == parameter
    app = module_body(main_template["modules"]["functionApp"])["params"]
    assert app["tenantHeader"] == "tenantHeader" and app["userHeader"] == "userHeader"


def test_apim_presents_its_managed_identity_token_to_the_function_app(main_template: dict[str, Any]) -> None:
    inbound = _render_api_policy(main_template).find("inbound")
    assert inbound is not None
    token = inbound.find("authentication-managed-identity")
    assert token is not None, "the Function App lets in only API Management's token"
    assert token.get("resource") == "__FUNCTION_APP_AUDIENCE__"
    assert token.get("client-id") == "__APIM_IDENTITY_CLIENT_ID__"
    params = module_body(main_template["modules"]["apimApi"])["params"]
    assert "'authAudience'" in str(params["functionAppAudience"]) and "'functionApp'" in str(
        params["functionAppAudience"]
    )
    function_params = module_body(main_template["modules"]["functionApp"])["params"]
    assert "'apimIdentityClientId'" in str(function_params["apimIdentityClientId"])


def test_function_app_requires_the_apim_token_except_on_health() -> None:
    bicep = (APIM_API.parent / "function-app.bicep").read_text()
    compact = re.sub(r"\s+", "", bicep)
    assert "name:'authsettingsV2'" in compact
    assert "requireAuthentication:true" in compact and "unauthenticatedClientAction:'Return401'" in compact
    assert "excludedPaths:['/health']" in compact  # the anonymous health only (/health/detail needs the token)
    assert "allowedApplications:concat([apimIdentityClientId],operatorClientIds)" in compact
