"""The one Entra ID credential of the worker: Azure OpenAI, Storage tables and queues all take it from here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.settings import Settings

# Tests inject a credential here (e.g. a static token); production resolves one from the environment.
credential_override: Any = None


def azure_credential(settings: Settings) -> Any:
    """Managed identity on Azure (user-assigned when AZURE_CLIENT_ID is set), developer credentials locally."""
    if credential_override is not None:
        return credential_override
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(managed_identity_client_id=settings.azure_client_id)
