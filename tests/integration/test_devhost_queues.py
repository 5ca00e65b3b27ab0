"""The dev host's queue listener against a real Azurite: delivery, dequeue counting, the visibility
timeout between tries, the poison queue, lease renewal and message encoding."""

from __future__ import annotations

import base64
import contextlib
import itertools
import threading
import time
import uuid
from collections.abc import Iterator

import azure.functions as func
import pytest
from azure.storage.queue import QueueClient

from tools.devhost.queues import QueueListener, QueueOptions, index_queue_functions
from tools.harness.azurite import AzuriteServer

OPTIONS = QueueOptions(
    batch_size=4, new_batch_threshold=2, max_polling_interval=0.3, visibility_timeout=1.0, max_dequeue_count=3
)


class Recorder:
    """A queue-triggered function that records its deliveries and does what the body says."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.started: list[float] = []  # when each delivery reached the function (monotonic)
        self.finished = threading.Event()  # a "slow" delivery has returned
        self.lock = threading.Lock()

    def app(self) -> func.FunctionApp:
        app = func.FunctionApp()

        @app.function_name("recorded")
        @app.queue_trigger(arg_name="msg", queue_name="placeholder", connection="AzureWebJobsStorage")
        def recorded(msg: func.QueueMessage) -> None:
            body = msg.get_body().decode()
            with self.lock:
                self.calls.append((body, msg.dequeue_count))
                self.started.append(time.monotonic())
            if body.startswith("fail"):
                raise RuntimeError("asked to fail")
            if body.startswith("slow"):
                time.sleep(3.5)  # the work that outlasts the lease, not a wait of the test
                self.finished.set()

        return app


@pytest.fixture
def queues(azurite: AzuriteServer) -> Iterator[tuple[QueueClient, QueueClient]]:
    name = f"q{uuid.uuid4().hex[:12]}"
    queue = QueueClient.from_connection_string(azurite.connection_string, name)
    poison = QueueClient.from_connection_string(azurite.connection_string, name + "-poison")
    queue.create_queue()
    yield queue, poison
    for client in (queue, poison):
        with contextlib.suppress(Exception):  # the poison queue exists only when something went there
            client.delete_queue()


def _listener(recorder: Recorder, queue: QueueClient, poison: QueueClient, **kw) -> QueueListener:
    (fn,) = index_queue_functions(recorder.app())
    return QueueListener(fn, queue, poison, OPTIONS, **kw)


def _send(queue: QueueClient, text: str) -> None:
    queue.send_message(base64.b64encode(text.encode()).decode())


def _wait(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def _count(client: QueueClient) -> int:
    try:
        return len(list(client.peek_messages(max_messages=32)))
    except Exception:
        return 0


def test_a_message_is_delivered_decoded_once_and_deleted(queues) -> None:
    queue, poison = queues
    recorder = Recorder()
    listener = _listener(recorder, queue, poison)
    listener.start()
    try:
        _send(queue, "hello")
        _wait(lambda: recorder.calls)
        _wait(lambda: queue.get_queue_properties().approximate_message_count == 0)
    finally:
        listener.stop()
    assert recorder.calls == [("hello", 1)]
    assert _count(poison) == 0


def test_a_failing_message_is_tried_max_dequeue_count_times_apart_then_poisoned(queues) -> None:
    queue, poison = queues
    recorder = Recorder()
    listener = _listener(recorder, queue, poison)
    listener.start()
    try:
        _send(queue, "fail-me")
        _wait(lambda: _count(poison) == 1, timeout=30)
    finally:
        listener.stop()
    assert [count for _, count in recorder.calls] == [1, 2, 3]
    # visibilityTimeout (1 s) separates the tries: stamped by the function itself, so a slow poll
    # of the test cannot shorten a gap (a slow machine only lengthens them).
    assert all(b - a >= 0.9 for a, b in itertools.pairwise(recorder.started)), recorder.started
    (copied,) = list(poison.peek_messages())
    assert base64.b64decode(copied.content).decode() == "fail-me"  # the body as it was sent
    # The host copies to the poison queue, then deletes the original: wait for the delete, and count
    # the message even while it is invisible (a peek would not show a message still in hand).
    _wait(lambda: queue.get_queue_properties().approximate_message_count == 0)


def test_a_message_dequeued_too_often_goes_to_poison_without_running(queues) -> None:
    queue, poison = queues
    _send(queue, "crashed-a-host-each-time")
    for _ in range(OPTIONS.max_dequeue_count):  # hosts that died with it in hand
        # receive it again as soon as it is visible again (its 1 s visibility timeout ran out)
        _wait(lambda: bool(list(queue.receive_messages(visibility_timeout=1))))
    recorder = Recorder()
    listener = _listener(recorder, queue, poison)
    listener.start()
    try:
        _wait(lambda: _count(poison) == 1)
    finally:
        listener.stop()
    assert recorder.calls == []


def test_a_body_that_is_not_base64_fails_and_ends_in_poison(queues) -> None:
    queue, poison = queues
    queue.send_message("not base64 at all!")
    recorder = Recorder()
    listener = _listener(recorder, queue, poison)
    listener.start()
    try:
        _wait(lambda: _count(poison) == 1, timeout=30)
    finally:
        listener.stop()
    assert recorder.calls == []  # the function never saw it


def test_a_long_invocation_keeps_its_message_invisible_by_renewing_the_lease(queues) -> None:
    queue, poison = queues
    recorder = Recorder()
    listener = _listener(recorder, queue, poison, lease=2)  # the function runs 3.5 s
    listener.start()
    try:
        _send(queue, "slow")
        assert recorder.finished.wait(30)
        _wait(lambda: queue.get_queue_properties().approximate_message_count == 0)
    finally:
        listener.stop()
    assert recorder.calls == [("slow", 1)]
