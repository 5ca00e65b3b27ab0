"""The tenants' token ledger in Table Storage (Azurite), as two workers share it: a charge on one
worker counts on the other, concurrent charges of one tenant lose no update and never pass the
budget, a new window starts again from zero, and an outage is a 503 (which the meter lets pass)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.errors import BackendUnavailable
from shared.settings import Settings
from shared.stores.state.usage import LedgerBusy, TableTokenLedger
from tools.harness.azurite import AzuriteServer


@pytest.fixture
def workers(tmp_path: Path, azurite: AzuriteServer) -> Iterator[tuple[TableTokenLedger, TableTokenLedger]]:
    settings = Settings(
        data_dir=tmp_path,
        state_store="azure_table",
        azure_tables_connection_string=azurite.connection_string,
        usage_table=f"usage{uuid.uuid4().hex[:8]}",
    )
    first, second = TableTokenLedger(settings), TableTokenLedger(settings)
    yield first, second
    first.close()
    second.close()


def test_a_charge_on_one_worker_counts_on_every_worker(workers: tuple[TableTokenLedger, TableTokenLedger]) -> None:
    one, two = workers
    tenant = "acme/eu#1?"  # characters Table keys may not hold
    assert one.reserve(tenant, 100, 70, 100) == 0
    assert two.reserve(tenant, 100, 31, 100) is None  # 70 + 31 > 100, counted by the other worker
    assert two.reserve(tenant, 100, 30, 100) == 70
    assert one.reserve("globex", 100, 100, 100) == 0  # another tenant, another row
    two.adjust(tenant, 100, -50)  # the model used less than estimated
    assert one.used(tenant, 100) == 50
    two.adjust(tenant, 99, 1_000)  # a correction for a window that is over changes nothing
    assert one.used(tenant, 100) == 50
    assert one.reserve(tenant, 101, 100, 100) == 0  # the next window starts from zero
    assert two.used(tenant, 101) == 100 and two.used(tenant, 100) == 0


def test_concurrent_charges_lose_no_update_and_never_pass_the_budget(
    workers: tuple[TableTokenLedger, TableTokenLedger],
) -> None:
    admitted: list[int] = []
    busy: list[int] = []
    lock = threading.Lock()

    def spend(ledger: TableTokenLedger) -> None:
        for _ in range(8):
            try:
                outcome = ledger.reserve("acme", 7, 10, 300)
            except LedgerBusy:
                with lock:
                    busy.append(1)
                continue
            if outcome is not None:
                with lock:
                    admitted.append(outcome)

    threads = [threading.Thread(target=spend, args=(workers[i % 2],)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    used = workers[0].used("acme", 7)
    assert used == 10 * len(admitted) and used <= 300
    # Each admitted charge saw a different use before it: no two were counted from the same row.
    assert sorted(admitted) == list(range(0, used, 10))
    assert used == 300 or busy  # 48 charges of 10 asked for: the budget is reached unless a race gave up


def test_an_unreachable_table_is_a_503(
    workers: tuple[TableTokenLedger, TableTokenLedger], azurite: AzuriteServer
) -> None:
    one, _ = workers
    assert one.reserve("acme", 1, 1, 10) == 0
    with azurite.outage(), pytest.raises(BackendUnavailable):
        one.reserve("acme", 1, 1, 10)
