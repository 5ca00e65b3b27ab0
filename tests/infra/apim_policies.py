"""The API Management policies as apim-api.bicep assembles them, rendered in Python from the
checked-in XML with given parameter values, for the checks of test_apim.py and test_apim_mcp.py.

Each function mirrors one Bicep expression of apim-api.bicep (the tests also check that Bicep still
contains that expression, so the two cannot drift apart unnoticed).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from infra_support import INFRA

POLICIES = INFRA / "app" / "policies"
APIM_API = INFRA / "app" / "apim-api.bicep"

# Placeholders of the product policies, each filled from the parameter named.
PLACEHOLDERS = {
    "__RATE_LIMIT_CALLS__": "rateLimitCalls",
    "__RATE_LIMIT_PERIOD__": "rateLimitPeriodSeconds",
    "__QUOTA_CALLS__": "quotaCalls",
    "__QUOTA_PERIOD__": "quotaPeriodSeconds",
}
# Placeholders of the caller-identity fragments, each filled by apim-api.bicep from the parameter named.
CALLER_PLACEHOLDERS = {
    "__TENANT_HEADER__": "tenantHeader",
    "__USER_HEADER__": "userHeader",
    "__USER_TOKEN_OPENID_CONFIG__": "userTokenOpenIdConfigUrl",
    "__USER_TOKEN_AUDIENCE__": "userTokenAudience",
    "__USER_TOKEN_ISSUER__": "userTokenIssuer",
    "__USER_TOKEN_CLAIM__": "userTokenClaim",
}
# The caller headers every policy deletes first, whatever the parameters.
DEFAULT_STRIPPED = ["x-memory-tenant", "x-memory-user", "x-memory-signature"]


def default(main_template: dict[str, Any], name: str) -> Any:
    return main_template["parameters"][name]["default"]


def main_caller_values(main_template: dict[str, Any], **overrides: str) -> dict[str, str]:
    values = {parameter: str(default(main_template, parameter)) for parameter in CALLER_PLACEHOLDERS.values()}
    return {**values, **overrides}


def caller_identity(values: dict[str, str]) -> str:
    """The caller-identity XML as apim-api.bicep builds it (callerIdentityXml) from these values."""
    stripped = list(DEFAULT_STRIPPED)
    for header in (values["tenantHeader"], values["userHeader"]):
        if header and header.lower() not in stripped:  # Bicep's union() keeps the first of equal items
            stripped.append(header.lower())
    text = "".join(f'<set-header name="{header}" exists-action="delete" />' for header in stripped)
    fragments = []
    if values["tenantHeader"]:
        fragments.append("tenant-header.xml")
    if values["userHeader"]:
        fragments += ["user-token.xml", "user-header.xml"]
    if values["tenantHeader"] or values["userHeader"]:
        fragments.append("caller-signature.xml")
    text += "".join((POLICIES / name).read_text() for name in fragments)
    for placeholder, parameter in CALLER_PLACEHOLDERS.items():
        text = text.replace(placeholder, values[parameter])
    return text


def render_policy(file_name: str, main_template: dict[str, Any], **caller: str) -> ET.Element:
    """api.xml or mcp-api.xml as deployed with main.bicep's defaults (and `caller` overrides)."""
    text = (POLICIES / file_name).read_text()
    text = text.replace("__CALLER_IDENTITY__", caller_identity(main_caller_values(main_template, **caller)))
    text = text.replace("__GATEWAY_ERRORS__", (POLICIES / "gateway-errors.xml").read_text())
    origins = default(main_template, "corsAllowedOrigins")
    return ET.fromstring(text.replace("__CORS_ALLOWED_ORIGINS__", "".join(f"<origin>{o}</origin>" for o in origins)))


def render_product_policy(file_name: str, main_template: dict[str, Any]) -> ET.Element:
    """A product policy as apim-api.bicep deploys it with the default parameters of main.bicep."""
    text = (POLICIES / file_name).read_text()
    for placeholder, parameter in PLACEHOLDERS.items():
        text = text.replace(placeholder, str(default(main_template, parameter)))
    return ET.fromstring(text)
