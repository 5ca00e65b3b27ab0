"""The Function App's settings match the settings the app reads (shared/settings.py), both ways,
secrets are Key Vault references only, and the app is the secure Flex Consumption app it should be."""

from __future__ import annotations

import re
from typing import Any

import pytest
from infra_support import is_secure, object_literals, resource_body, strings

_NOT_OPENAI_COMPATIBLE = "the cloud deployment uses the provisioned Azure OpenAI, not an OpenAI-compatible endpoint"

# Settings the app reads that the cloud deployment deliberately does not set, with the reason.
NOT_SET_IN_THE_CLOUD = {
    # Local, zero-setup mode only: the cloud uses server stores, remote embeddings and tables.
    "DATA_DIR": "no local state in the cloud: vectors in Qdrant/Chroma, sessions and history in tables",
    "QDRANT_PATH": "embedded Qdrant is local-only; the cloud uses a Qdrant server (QDRANT_URL)",
    "LOCAL_EMBEDDING_MODEL": "embeddings come from Azure OpenAI (EMBEDDING_PROVIDER=azure_openai)",
    "LOCAL_EMBEDDING_MODEL_PATH": "embeddings come from Azure OpenAI (EMBEDDING_PROVIDER=azure_openai)",
    "LOCAL_EMBEDDING_THREADS": "embeddings come from Azure OpenAI (EMBEDDING_PROVIDER=azure_openai)",
    "EMBEDDING_DIMS": "derived by the app from AZURE_EMBEDDING_MODEL, which the deployment sets",
    "WORKER_CONCURRENCY": "its default limits only a worker on the embedded engine; the cloud's store is a server",
    "CALLER_SIGNATURE_MAX_AGE_SECONDS": "the default window (300 s) covers the clock skew between APIM and the app",
    # Keyless by design.
    "AZURE_OPENAI_API_KEY": "Azure OpenAI has local auth disabled; the app uses its managed identity",
    "AZURE_TABLES_CONNECTION_STRING": "tables are reached keylessly through AZURE_TABLES_ENDPOINT",
    "AzureWebJobsStorage": "the host storage is identity-based (AzureWebJobsStorage__*), no connection string",
    "AzureWebJobsStorage__accountName": "the queue endpoint is given whole, as AzureWebJobsStorage__queueServiceUri",
    # The OpenAI-compatible provider (Ollama, vLLM, OpenAI) is not what this deployment provisions.
    "OPENAI_BASE_URL": _NOT_OPENAI_COMPATIBLE,
    "OPENAI_API_KEY": _NOT_OPENAI_COMPATIBLE,
    "OPENAI_MODEL": _NOT_OPENAI_COMPATIBLE,
    "OPENAI_EMBEDDING_MODEL": _NOT_OPENAI_COMPATIBLE,
    # Tuning knobs whose defaults suit the cloud; set them in the portal or Bicep when needed.
    "AZURE_OPENAI_API_VERSION": "the app's default is the GA REST version its client code is tested with",
    "MAX_BODY_BYTES": "limit keeps its default",
    "MAX_BATCH_SIZE": "limit keeps its default",
    "MAX_CONTENT_CHARS": "limit keeps its default",
    "LIST_PAGE_SIZE": "limit keeps its default",
    "DUPLICATE_THRESHOLD": "unset: the measured threshold of the model in use (shared/memory/dedupe.py)",
    "VECTOR_STORE_TIMEOUT_SECONDS": "timeout keeps its default",
    "LLM_TIMEOUT_SECONDS": "timeout keeps its default",
    "LLM_MAX_RETRIES": "retry policy keeps its default",
    "LLM_TEMPERATURE": "model behaviour keeps its default",
    "CHAT_HISTORY_TURNS": "chat behaviour keeps its default",
    "CHAT_MEMORY_LIMIT": "chat behaviour keeps its default",
    "SEARCH_MODE": "hybrid ranking (the default) is what the product documents",
    "TENANT_TOKEN_WINDOW_SECONDS": "a budget per minute, the unit of the deployments' capacity (the default)",
    "MAX_EMBEDDING_TOKENS_PER_REQUEST": "limit keeps its default",
    "MAX_PROMPT_TOKENS": "limit keeps its default",
}

# Settings of the Functions host (or the platform), set by the deployment but not read by app code.
HOST_SETTING = re.compile(
    r"^(AzureWebJobsStorage__\w+|APPLICATIONINSIGHTS_AUTHENTICATION_STRING|FUNCTIONS_\w+|WEBSITE_\w+)$"
)

# Settings the app reads that hold credentials.
SECRET_SETTING = re.compile(r"(PASSWORD|API_KEY|TOKEN|SECRET|CONNECTION_STRING)$")
# The Application Insights connection string names an ingestion endpoint; with local auth disabled it
# cannot be used to write telemetry, and Microsoft does not treat it as a secret.
NOT_A_SECRET = {"APPLICATIONINSIGHTS_CONNECTION_STRING"}

# Flex Consumption rejects or ignores these; runtime and version come from functionAppConfig.
NOT_ON_FLEX = {
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_NODE_DEFAULT_VERSION",
}

KEY_VAULT_REFERENCE = re.compile(r"^@Microsoft\.KeyVault\(SecretUri=\$\{\w+\}\)$")


def settings_env_names() -> set[str]:
    """The environment variable names shared.settings.Settings reads, read at run time."""
    settings_module = pytest.importorskip("shared.settings", reason="shared/settings.py is not importable")
    names = set()
    for name, field in settings_module.Settings.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
        names.add(alias or name.upper())
    return names


@pytest.fixture(scope="module")
def function_app(templates: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return templates["app/function-app.bicep"]


def _app_settings_resources(function_app: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: resource
        for name, resource in function_app["resources"].items()
        if resource["type"] == "Microsoft.Web/sites/config" and resource_body(resource)["name"] == "appsettings"
    }


@pytest.fixture(scope="module")
def app_settings(function_app: dict[str, Any]) -> dict[str, list[Any]]:
    """Every app setting the Bicep can produce (all branches), with every value it can take."""
    resources = _app_settings_resources(function_app)
    assert list(resources) == ["appSettingsConfig"], "the app settings are one sites/config 'appsettings' resource"
    properties = resource_body(resources["appSettingsConfig"])["properties"]
    # properties is `union(<the settings already on the app>, appSettings)`.
    assert properties["function"]["type"] == "union"
    assert properties["function"]["parameters"]["arg_2"] == "appSettings", "the declared settings must win"
    settings: dict[str, list[Any]] = {}
    for literal in object_literals("appSettings", function_app["variables"]):
        for key, value in literal.items():
            settings.setdefault(key, []).append(value)
    assert settings, "no app setting found in function-app.bicep"
    return settings


def test_app_settings_are_declared_in_one_place(function_app: dict[str, Any]) -> None:
    # Not inline in the site as well: siteConfig.appSettings would replace the set on every provision.
    site = resource_body(function_app["resources"]["functionApp"])
    assert "appSettings" not in site["properties"]["siteConfig"]
    config = resource_body(function_app["resources"]["appSettingsConfig"])
    assert config["parent"] == "functionApp"


def test_settings_set_outside_bicep_are_kept(function_app: dict[str, Any]) -> None:
    current = resource_body(function_app["resources"]["appSettingsConfig"])["properties"]["function"]["parameters"]
    listed = current["arg_1"]["operator"]["operands"]["operand_1"]["function"]
    assert listed["type"] == "list_func" and listed["parameters"]["func_name"] == "list"
    assert listed["parameters"]["resource_identifier"] == "${functionApp.id}/config/appsettings"
    assert current["arg_1"]["operator"]["operands"]["operand_2"] == "properties"


def _upper(names: set[str]) -> dict[str, str]:
    return {name.upper(): name for name in names}


def test_every_app_setting_is_read_by_the_app_or_the_host(app_settings: dict[str, list[Any]]) -> None:
    read = _upper(settings_env_names())
    unknown = sorted(name for name in app_settings if name.upper() not in read and not HOST_SETTING.match(name))
    assert not unknown, f"app settings nothing reads (typo, or a setting the app lacks): {unknown}"


def test_every_setting_of_the_app_is_deployed_or_explained(app_settings: dict[str, list[Any]]) -> None:
    deployed = {name.upper() for name in app_settings}
    explained = {name.upper() for name in NOT_SET_IN_THE_CLOUD}
    missing = sorted(name for name in settings_env_names() if name.upper() not in deployed | explained)
    assert not missing, (
        f"settings of shared/settings.py that function-app.bicep neither sets nor explains: {missing}. "
        "Add them to the app settings, or to NOT_SET_IN_THE_CLOUD in this file with the reason."
    )


def test_explanations_are_not_stale(app_settings: dict[str, list[Any]]) -> None:
    read = {name.upper() for name in settings_env_names()}
    stale = sorted(name for name in NOT_SET_IN_THE_CLOUD if name.upper() not in read)
    assert not stale, f"NOT_SET_IN_THE_CLOUD names settings the app no longer reads: {stale}"
    both = sorted(name for name in NOT_SET_IN_THE_CLOUD if name.upper() in {key.upper() for key in app_settings})
    assert not both, f"settings both deployed and listed as not deployed: {both}"


def test_secrets_are_key_vault_references_only(app_settings: dict[str, list[Any]]) -> None:
    secret_names = {name for name in settings_env_names() if SECRET_SETTING.search(name.upper())} - NOT_A_SECRET
    assert {"NEO4J_PASSWORD", "QDRANT_API_KEY"} <= secret_names
    for name, values in app_settings.items():
        if name.upper() in {secret.upper() for secret in secret_names}:
            for value in values:
                assert isinstance(value, str) and KEY_VAULT_REFERENCE.match(value), (
                    f"{name} must be a Key Vault reference, not {value!r}"
                )
    for required in ("NEO4J_PASSWORD", "QDRANT_API_KEY"):
        assert required in app_settings, f"{required} is not wired to its Key Vault secret"


def test_function_app_module_receives_no_secret(function_app: dict[str, Any]) -> None:
    # Secret values never reach the Function App module: it only gets versionless secret URIs.
    secure = [name for name, parameter in function_app["parameters"].items() if is_secure(parameter)]
    assert secure == []
    text = "\n".join(strings(function_app))
    assert "listKeys" not in text and "listSecrets" not in text


def test_cloud_configuration_is_keyless(app_settings: dict[str, list[Any]]) -> None:
    assert app_settings["LLM_PROVIDER"] == ["azure_openai"]
    assert app_settings["EMBEDDING_PROVIDER"] == ["azure_openai"]
    assert app_settings["STATE_STORE"] == ["azure_table"]
    assert app_settings["AzureWebJobsStorage__credential"] == ["managedidentity"]
    # The ingestion queue is reached the host's way, keylessly: the same endpoint the trigger uses.
    assert app_settings["INGEST_MODE"] == ["queue"]
    assert app_settings["AzureWebJobsStorage__queueServiceUri"] == ["storageQueueEndpoint"]
    for name in (
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_DEPLOYMENT",
        "AZURE_EMBEDDING_DEPLOYMENT",
        "AZURE_TABLES_ENDPOINT",
        "AZURE_CLIENT_ID",
        "AzureWebJobsStorage__clientId",
    ):
        assert name in app_settings
    for name in ("AZURE_OPENAI_API_KEY", "AZURE_TABLES_CONNECTION_STRING", "AzureWebJobsStorage", "OPENAI_API_KEY"):
        assert name not in app_settings
    assert not NOT_ON_FLEX & set(app_settings), "settings Flex Consumption does not accept"


def test_function_app_is_secure_flex_consumption(function_app: dict[str, Any]) -> None:
    resources = function_app["resources"]
    plan = resource_body(resources["plan"])
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert plan["properties"]["reserved"] is True
    site = resource_body(resources["functionApp"])
    assert site["kind"] == "functionapp,linux"
    assert site["identity"]["type"] == "UserAssigned"
    properties = site["properties"]
    assert properties["httpsOnly"] is True
    assert properties["keyVaultReferenceIdentity"] == "identityId"
    assert properties["functionAppConfig"]["runtime"] == {"name": "python", "version": "3.11"}
    assert properties["functionAppConfig"]["deployment"]["storage"]["authentication"]["type"] == "UserAssignedIdentity"
    site_config = properties["siteConfig"]
    assert site_config["minTlsVersion"] == "1.2"
    assert site_config["ftpsState"] == "Disabled"
    # Only API Management may call the app when its tier has stable outbound IPs.
    assert "allowedCallerIpAddresses" in list(strings(site_config["ipSecurityRestrictions"]))
    for policy in ("ftpPublishing", "scmPublishing"):
        assert resource_body(resources[policy])["properties"]["allow"] is False


def test_access_restrictions_are_fed_with_the_apim_addresses(main_template: dict[str, Any]) -> None:
    from infra_support import module_body

    params = module_body(main_template["modules"]["functionApp"])["params"]
    assert "outboundIpAddresses" in list(strings(params["allowedCallerIpAddresses"]))


def test_always_ready_instances_are_opt_in(function_app: dict[str, Any], main_template: dict[str, Any]) -> None:
    from infra_support import REPO_ROOT, decorator, module_body

    parameter = main_template["parameters"]["functionAlwaysReadyInstances"]
    assert parameter["default"] == 0, "none by default: the app scales to zero and costs nothing at rest"
    assert decorator(parameter, "min_value") == 0
    # Never more than the instances the plan may run (its lowest allowed maximum).
    maximum = main_template["parameters"]["functionMaximumInstanceCount"]
    assert decorator(parameter, "max_value") <= decorator(maximum, "min_value")
    params = module_body(main_template["modules"]["functionApp"])["params"]
    assert params["alwaysReadyInstances"] == "functionAlwaysReadyInstances"

    scale = resource_body(function_app["resources"]["functionApp"])["properties"]["functionAppConfig"]
    always_ready = scale["scaleAndConcurrency"]["alwaysReady"]["operator"]
    assert always_ready["type"] == "conditional"
    assert always_ready["operands"]["condition"] == {
        "operator": {"type": "equals", "operands": {"operand_1": "alwaysReadyInstances", "operand_2": 0}}
    }
    assert always_ready["operands"]["true_value"] == []
    # The HTTP functions form Flex Consumption's 'http' scale group; memory_ingest (queue) scales on its own.
    assert always_ready["operands"]["false_value"] == [{"name": "http", "instanceCount": "alwaysReadyInstances"}]

    manual = (REPO_ROOT / "docs" / "deploy.md").read_text()
    costs = manual[manual.index("## What it costs at rest") :]
    costs = costs[: costs.index("\n## ", 4)]
    assert "functionAlwaysReadyInstances" in costs and "always-ready" in costs, (
        "the cost of always-ready instances belongs in the cost section"
    )
