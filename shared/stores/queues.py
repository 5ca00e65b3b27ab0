"""The ingestion queue (`memory-ingest` on the host storage) as the app sends to it.

The queue-triggered function reads what this sends, through the Functions host, so both must agree
on the host's rules, which live in host.json next to function_app.py (`extensions.queues`):
`messageEncoding` (base64 unless "none") says how the host decodes a message body, and
`maxDequeueCount` (default 5) how many deliveries a message gets before it goes to
`<queue>-poison`; the function reads it to know when an attempt is the last one.

Authentication is the host storage's: a connection string (Azurite, keys), or the queue endpoint
with the managed identity (`AzureWebJobsStorage__queueServiceUri`, keyless on Azure).
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.errors import BackendUnavailable
from shared.lazy import Lazy
from shared.observability.tracing import dependency_span

if TYPE_CHECKING:
    from shared.settings import Settings

# Imported by functions/ingest.py when the app is indexed, so nothing heavy (pydantic) at import.
REPO_ROOT = Path(__file__).resolve().parents[2]
logger = logging.getLogger(__name__)

INGEST_QUEUE = "memory-ingest"
POISON_SUFFIX = "-poison"
_DEFAULT_MAX_DEQUEUE_COUNT = 5


@dataclass(frozen=True)
class QueueRules:
    message_encoding: str  # "base64" or "none"
    max_dequeue_count: int


def _get_ci(mapping: Any, key: str) -> Any:
    # The host binds host.json case-insensitively.
    if not isinstance(mapping, dict):
        return None
    return next((v for k, v in mapping.items() if isinstance(k, str) and k.lower() == key.lower()), None)


@lru_cache(maxsize=4)
def queue_rules(host_json: Path = REPO_ROOT / "host.json") -> QueueRules:
    """The queue options of the app's host.json, with the host's defaults for what it leaves out."""
    try:
        data = json.loads(host_json.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        data = {}
    queues = _get_ci(_get_ci(data, "extensions"), "queues") or {}
    encoding = str(_get_ci(queues, "messageEncoding") or "base64").lower()
    count = _get_ci(queues, "maxDequeueCount")
    return QueueRules(
        message_encoding="none" if encoding == "none" else "base64",
        max_dequeue_count=int(count) if isinstance(count, int) and count >= 1 else _DEFAULT_MAX_DEQUEUE_COUNT,
    )


class IngestQueue:
    """Sends event messages to the ingestion queue (one client per worker, the queue made on first use)."""

    def __init__(self, settings: Settings, name: str = INGEST_QUEUE) -> None:
        self.settings = settings
        self.name = name
        self._client: Lazy[Any] = Lazy(lambda: self._build(self.name, create=True))
        self._poison: Lazy[Any] = Lazy(lambda: self._build(f"{self.name}-poison", create=False))

    def _build(self, name: str, *, create: bool) -> Any:
        from azure.storage.queue import QueueClient, TextBase64EncodePolicy

        target = self.settings.queue_connection or ""
        options: dict[str, Any] = {"retry_total": 2, "connection_timeout": 5, "read_timeout": 15}
        if queue_rules().message_encoding == "base64":
            options["message_encode_policy"] = TextBase64EncodePolicy()
        if target.startswith(("http://", "https://")):
            from shared.credentials import azure_credential

            client = QueueClient(target, name, credential=azure_credential(self.settings), **options)
        else:
            client = QueueClient.from_connection_string(target, name, **options)
        if create:
            from azure.core.exceptions import ResourceExistsError

            with contextlib.suppress(ResourceExistsError):
                client.create_queue()
        return client

    def backlog(self) -> int:
        """About how many messages wait in the queue (the storage service's approximate count)."""
        return int(self._client.get().get_queue_properties().approximate_message_count or 0)

    def poison_count(self) -> int:
        """About how many messages wait in `<queue>-poison` (0 while the host has made none)."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return int(self._poison.get().get_queue_properties().approximate_message_count or 0)
        except ResourceNotFoundError:
            return 0

    def send(self, message: dict[str, Any], *, delay_seconds: int = 0) -> None:
        """Enqueue one JSON message, hidden for `delay_seconds` (at most 7 days); a storage outage is a 503."""
        from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

        try:
            attributes = {"messaging.system": "azure_queue", "messaging.destination.name": self.name}
            with dependency_span(f"queue send {self.name}", {**attributes, "messaging.operation": "publish"}):
                hidden = {"visibility_timeout": min(delay_seconds, 7 * 86_400 - 1)} if delay_seconds > 0 else {}
                self._client.get().send_message(json.dumps(message, separators=(",", ":")), **hidden)
        except (ServiceRequestError, ServiceResponseError, HttpResponseError) as error:
            logger.warning("ingestion queue unavailable: %s", error)
            raise BackendUnavailable("queue", "the ingestion queue is unavailable; retry later") from error

    def close(self) -> None:
        for held in (self._client, self._poison):
            client = held.reset()
            if client is not None:
                client.close()
