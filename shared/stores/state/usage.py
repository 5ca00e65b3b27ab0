"""How many model tokens each tenant has spent in the current budget window (shared/ai/quota.py).

A budget is only a budget when every worker counts against the same number: Flex Consumption runs
many stateless workers, so the Azure ledger is one Table Storage row per tenant, changed with
optimistic concurrency (read with its ETag, write back if unchanged, else read again). The row
holds the window it counts and the tokens spent in it; the first charge of a new window starts it
again, so there is one row per tenant, never a row per minute to clean up. It holds no personal
data: a tenant id and a number.

The local ledger (zero-setup, tests) is the same rule in the worker's memory: one process only.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any, Protocol

from shared.settings import Settings

logger = logging.getLogger(__name__)


class LedgerBusy(Exception):
    """Too many concurrent charges of one tenant to settle its count within the attempts."""


class TokenLedger(Protocol):
    """Each tenant's use in the current window, shared by every worker (the ledgers below)."""

    def reserve(self, tenant: str, window: int, tokens: int, budget: int) -> int | None:
        """Adds `tokens` to `tenant`'s use in `window` unless that would pass `budget`; returns the
        use before the charge, or None when refused. A window's first charge is always admitted,
        so a request larger than the whole budget can run, alone, in a fresh window."""
        ...

    def adjust(self, tenant: str, window: int, delta: int) -> None:
        """Corrects a reservation by what the model reported (`delta` may be negative)."""
        ...


# Writers of one tenant racing for its row: how many times to read again before giving up.
_ATTEMPTS = 8


__all__ = ["LedgerBusy", "LocalTokenLedger", "TableTokenLedger", "TokenLedger", "token_ledger"]


def _admits(used: int, tokens: int, budget: int) -> bool:
    return used == 0 or used + tokens <= budget


class LocalTokenLedger:
    """One process's ledger: a counter per tenant under a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._use: dict[str, tuple[int, int]] = {}  # tenant -> (window, tokens)

    def reserve(self, tenant: str, window: int, tokens: int, budget: int) -> int | None:
        with self._lock:
            counted, used = self._use.get(tenant, (window, 0))
            used = used if counted == window else 0
            if not _admits(used, tokens, budget):
                return None
            self._use[tenant] = (window, used + tokens)
            return used

    def adjust(self, tenant: str, window: int, delta: int) -> None:
        with self._lock:
            counted, used = self._use.get(tenant, (window, 0))
            if counted == window:
                self._use[tenant] = (window, max(0, used + delta))

    def used(self, tenant: str, window: int) -> int:
        with self._lock:
            counted, used = self._use.get(tenant, (window, 0))
            return used if counted == window else 0


class TableTokenLedger:
    """Every worker's ledger: PartitionKey = the tenant (key-encoded), RowKey `tokens`, with the
    properties `window` and `tokens`."""

    ROW = "tokens"

    def __init__(self, settings: Settings) -> None:
        from shared.stores.state.tables import _Tables

        self._tables = _Tables(settings)
        self._name = settings.usage_table

    def _table(self) -> Any:
        return self._tables.table(self._name)

    def reserve(self, tenant: str, window: int, tokens: int, budget: int) -> int | None:
        outcome: list[int | None] = []

        def change(used: int) -> int | None:
            if not _admits(used, tokens, budget):
                outcome.append(None)
                return None
            outcome.append(used)
            return used + tokens

        self._change(tenant, window, change)
        return outcome[-1]

    def adjust(self, tenant: str, window: int, delta: int) -> None:
        self._change(tenant, window, lambda used: max(0, used + delta), new_window_starts=False)

    def used(self, tenant: str, window: int) -> int:
        from azure.core.exceptions import ResourceNotFoundError

        from shared.stores.state.tables import encode_key, table_calls

        with table_calls("read token use"):
            try:
                entity = self._table().get_entity(encode_key(tenant), self.ROW)
            except ResourceNotFoundError:
                return 0
        return int(entity.get("tokens") or 0) if int(entity.get("window") or -1) == window else 0

    def close(self) -> None:
        self._tables.close()

    def _change(self, tenant: str, window: int, change: Any, *, new_window_starts: bool = True) -> None:
        """Applies `change(used) -> new use or None (leave it)` to the tenant's row, retried on a race."""
        from azure.core import MatchConditions
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        from shared.stores.state.tables import encode_key, table_calls

        table, partition = self._table(), encode_key(tenant)
        for attempt in range(_ATTEMPTS):
            try:
                with table_calls("charge tokens"):
                    try:
                        entity = table.get_entity(partition, self.ROW)
                    except ResourceNotFoundError:
                        entity = None
                    current = entity is not None and int(entity.get("window") or -1) == window
                    if not current and not new_window_starts:
                        return  # a correction of a window that is over: nothing left to correct
                    used = int(entity.get("tokens") or 0) if entity is not None and current else 0
                    new = change(used)
                    if new is None:
                        return
                    row = {"PartitionKey": partition, "RowKey": self.ROW, "window": window, "tokens": int(new)}
                    if entity is None:
                        table.create_entity(row)
                    else:
                        table.update_entity(
                            row,
                            mode=UpdateMode.REPLACE,
                            etag=entity.metadata["etag"],
                            match_condition=MatchConditions.IfNotModified,
                        )
                    return
            except HttpResponseError as error:
                if error.status_code not in (409, 412):  # 409: created meanwhile; 412: changed meanwhile
                    raise
            time.sleep(0.01 * (attempt + 1) * (0.5 + random.random()))
        raise LedgerBusy(f"the token use of tenant {tenant!r} changed {_ATTEMPTS} times while being charged")


_LEDGERS: dict[tuple[str, ...], TokenLedger] = {}
_LEDGERS_LOCK = threading.Lock()


def token_ledger(settings: Settings) -> TokenLedger:
    """The worker's ledger for these settings: one per process, whichever client (chat model,
    embedder) asks, so both charge the same counter."""
    if settings.resolved_state_store == "azure_table":
        key: tuple[str, ...] = ("table", settings.table_connection or "", settings.usage_table)
    else:
        key = ("local", str(settings.data_dir))
    with _LEDGERS_LOCK:
        ledger = _LEDGERS.get(key)
        if ledger is None:
            ledger = TableTokenLedger(settings) if key[0] == "table" else LocalTokenLedger()
            _LEDGERS[key] = ledger
        return ledger
