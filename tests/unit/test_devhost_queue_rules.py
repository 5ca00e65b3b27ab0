"""The dev host's queue rules that need no queue: host.json options, time spans, the polling
back-off, message decoding, and which functions it runs (the rest is in
tests/integration/test_devhost_queues.py, against Azurite)."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path

import azure.functions as func
import pytest

from tests.helpers import REPO
from tools.devhost.queues import (
    MIN_POLLING_INTERVAL,
    Backoff,
    QueueOptions,
    decode_body,
    index_queue_functions,
    parse_timespan,
    read_queue_options,
)


def _host_json(tmp_path: Path, queues: dict) -> Path:
    path = tmp_path / "host.json"
    path.write_text(json.dumps({"version": "2.0", "extensions": {"queues": queues}}))
    return path


def test_defaults_are_the_hosts_when_host_json_says_nothing(tmp_path: Path) -> None:
    assert read_queue_options(None) == QueueOptions()
    assert read_queue_options(_host_json(tmp_path, {})) == QueueOptions(
        batch_size=16, new_batch_threshold=8, max_polling_interval=60.0, visibility_timeout=0.0,
        max_dequeue_count=5, message_encoding="base64",
    )  # fmt: skip


def test_options_are_read_case_insensitively_with_their_units(tmp_path: Path) -> None:
    options = read_queue_options(
        _host_json(
            tmp_path,
            {"BATCHSIZE": 4, "maxPollingInterval": 2500, "VisibilityTimeout": "00:00:07.5", "maxDequeueCount": 2,
             "messageEncoding": "None"},
        )
    )  # fmt: skip
    assert options == QueueOptions(4, 2, 2.5, 7.5, 2, "none")  # newBatchThreshold: batchSize / 2


def test_the_apps_own_host_json_is_read() -> None:
    options = read_queue_options(REPO / "host.json")
    assert options.max_dequeue_count >= 2 and options.message_encoding == "base64"
    assert options.max_polling_interval >= MIN_POLLING_INTERVAL


@pytest.mark.parametrize(
    ("queues", "problem"),
    [({"batchSize": 33}, "batchSize"), ({"messageEncoding": "utf8"}, "messageEncoding"),
     ({"maxPollingInterval": 50}, "maxPollingInterval"), ({"maxDequeueCount": 0}, "maxDequeueCount")],
)  # fmt: skip
def test_options_the_host_refuses_are_refused(tmp_path: Path, queues: dict, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        read_queue_options(_host_json(tmp_path, queues))


def test_time_spans() -> None:
    assert parse_timespan("00:01:00") == 60
    assert parse_timespan("1.02:03:04") == 86400 + 2 * 3600 + 3 * 60 + 4
    assert parse_timespan(2000, int_means_ms=True) == 2.0
    with pytest.raises(ValueError):
        parse_timespan("two seconds")


def test_back_off_grows_randomly_to_the_maximum_and_resets_after_a_find() -> None:
    backoff = Backoff(maximum=5.0, rng=random.Random(7))
    delays = [backoff.next_delay(False) for _ in range(12)]
    assert delays[0] >= MIN_POLLING_INTERVAL
    for exponent, delay in enumerate(delays[:5]):  # min + min * 2^k * (1 ± 20 %)
        low = MIN_POLLING_INTERVAL * (1 + 0.8 * 2**exponent)
        high = MIN_POLLING_INTERVAL * (1 + 1.2 * 2**exponent)
        assert low <= delay <= high, (exponent, delay)
    assert delays == sorted(delays) and delays[-1] == 5.0  # capped at maxPollingInterval
    assert backoff.next_delay(True) == MIN_POLLING_INTERVAL
    assert backoff.next_delay(False) <= MIN_POLLING_INTERVAL * 2.2


def test_message_bodies_are_decoded_by_the_configured_encoding() -> None:
    text = '{"event_id": "é"}'
    assert decode_body(base64.b64encode(text.encode()).decode(), "base64") == text.encode()
    assert decode_body(text, "none") == text.encode()
    with pytest.raises(ValueError, match="base64"):
        decode_body(text, "base64")


def test_queue_functions_are_found_by_their_trigger_not_their_name() -> None:
    app = func.FunctionApp()

    @app.function_name("anything_at_all")
    @app.queue_trigger(arg_name="item", queue_name="jobs", connection="MyStorage")
    def handler(item: func.QueueMessage) -> None: ...

    @app.route(route="ping")
    def ping(req: func.HttpRequest) -> str:
        return "pong"

    (found,) = index_queue_functions(app)
    assert (found.name, found.queue_name, found.connection, found.trigger_arg) == (
        "anything_at_all", "jobs", "MyStorage", "item",
    )  # fmt: skip
    assert found.error is None


def test_the_app_has_the_ingestion_queue_function() -> None:
    import function_app

    names = {(fn.queue_name, fn.connection) for fn in index_queue_functions(function_app.app)}
    assert ("memory-ingest", "AzureWebJobsStorage") in names
