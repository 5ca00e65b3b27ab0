"""Queue triggers for the dev host (tools/devhost/): Azure Storage queue listeners run by the rules
of the Functions host's queue extension, against Azurite or a real account.

Like the HTTP side it knows no function by name: it runs every `queueTrigger` function of the
indexed app, on the queue and connection its binding names, with the options of host.json
`extensions.queues`. The rules and where they come from ("extension" is Azure/azure-sdk-for-net
sdk/storage/Microsoft.Azure.WebJobs.Extensions.Storage.Queues, "common" its shared
Listeners/QueueListener.cs and QueueProcessor.cs):

- Polling: a poll that found messages is followed by the next one as soon as the messages in hand
  drop to `newBatchThreshold`; an empty poll backs off, randomized exponentially (±20 %) from 100 ms
  up to `maxPollingInterval` (RandomizedExponentialBackoffStrategy, QueuePollingIntervals.Minimum),
  and the back-off resets after a poll that found something.
- Each poll receives up to `batchSize` messages; at most batchSize + newBatchThreshold run at once.
- A message is received invisible for 10 minutes (`--queue-lease` changes that here, so a test of a
  killed host need not wait 10 minutes); while its function runs, the lease is renewed when half
  of it has passed (CreateUpdateMessageVisibilityTimer).
- Success deletes the message. A failure with dequeueCount < maxDequeueCount makes it visible
  again after `visibilityTimeout`; at maxDequeueCount it is copied to `<queue>-poison` and deleted.
  A message received with dequeueCount > maxDequeueCount (a host that died running it each time)
  goes to the poison queue without running (QueueProcessor.BeginProcessingMessageAsync).
- `messageEncoding` "base64" (default) decodes the body from base64, and a body that is not
  base64 fails the invocation (then retries and poison as above); "none" passes the text as is.
- Defaults when host.json says nothing: batchSize 16, newBatchThreshold batchSize/2 (one core),
  maxPollingInterval 1 minute, visibilityTimeout 0, maxDequeueCount 5.
- The connection setting (`connection="AzureWebJobsStorage"`) is a connection string, or the
  identity-based `<name>__queueServiceUri` / `<name>__accountName` with DefaultAzureCredential.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import inspect
import json
import logging
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tools.devhost.indexing import binding_problems

if TYPE_CHECKING:
    import azure.functions as func

log = logging.getLogger("devhost.queues")

MIN_POLLING_INTERVAL = 0.1  # QueuePollingIntervals.Minimum
DEFAULT_LEASE = 600.0  # QueueListener._visibilityTimeout: 10 minutes
POISON_SUFFIX = "-poison"
_RANDOMIZATION = 0.2
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)$")


# --- host.json ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueOptions:
    """`extensions.queues` of host.json, with the host's defaults."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_polling_interval: float = 60.0
    visibility_timeout: float = 0.0
    max_dequeue_count: int = 5
    message_encoding: str = "base64"


def parse_timespan(value: object, *, int_means_ms: bool = False) -> float:
    """Seconds of a .NET TimeSpan string ("00:00:30", "1.02:00:00"), or of an int (milliseconds when
    `int_means_ms`, as maxPollingInterval accepts)."""
    if isinstance(value, bool):
        raise ValueError(f"not a time span: {value!r}")
    if isinstance(value, int | float):
        return float(value) / 1000 if int_means_ms else float(value)
    found = _TIMESPAN.match(str(value).strip())
    if found is None:
        raise ValueError(f"not a time span: {value!r}")
    days, hours, minutes, seconds = found.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _get_ci(mapping: object, key: str) -> Any:
    if not isinstance(mapping, dict):
        return None
    return next((v for k, v in mapping.items() if isinstance(k, str) and k.lower() == key.lower()), None)


def read_queue_options(host_json: str | os.PathLike[str] | None) -> QueueOptions:
    """The queue options of a host.json (the defaults when there is none)."""
    if host_json is None or not Path(host_json).is_file():
        return QueueOptions()
    data = json.loads(Path(host_json).read_text(encoding="utf-8-sig"))
    queues = _get_ci(_get_ci(data, "extensions"), "queues") or {}
    batch = _get_ci(queues, "batchSize")
    batch_size = int(batch) if batch is not None else 16
    if not 1 <= batch_size <= 32:
        raise ValueError(f"{host_json}: extensions.queues.batchSize must be 1-32, not {batch_size}")
    threshold = _get_ci(queues, "newBatchThreshold")
    polling = _get_ci(queues, "maxPollingInterval")
    visibility = _get_ci(queues, "visibilityTimeout")
    dequeue = _get_ci(queues, "maxDequeueCount")
    encoding = str(_get_ci(queues, "messageEncoding") or "base64").lower()
    if encoding not in ("base64", "none"):
        raise ValueError(f"{host_json}: extensions.queues.messageEncoding must be base64 or none, not {encoding!r}")
    options = QueueOptions(
        batch_size=batch_size,
        new_batch_threshold=int(threshold) if threshold is not None else batch_size // 2,
        max_polling_interval=parse_timespan(polling, int_means_ms=True) if polling is not None else 60.0,
        visibility_timeout=parse_timespan(visibility) if visibility is not None else 0.0,
        max_dequeue_count=int(dequeue) if dequeue is not None else 5,
        message_encoding=encoding,
    )
    if options.max_polling_interval < MIN_POLLING_INTERVAL:
        raise ValueError(f"{host_json}: extensions.queues.maxPollingInterval must be at least 100 ms")
    if options.max_dequeue_count < 1:
        raise ValueError(f"{host_json}: extensions.queues.maxDequeueCount must be at least 1")
    return options


# --- polling back-off -----------------------------------------------------------------------------


class Backoff:
    """Randomized exponential back-off between empty polls, reset by a poll that found messages."""

    def __init__(self, maximum: float, minimum: float = MIN_POLLING_INTERVAL, rng: random.Random | None = None):
        self.minimum = minimum
        self.maximum = max(maximum, minimum)
        self.current = minimum
        self._exponent = 0
        self._rng = rng or random.Random()  # jitter, not security

    def next_delay(self, found_since_last_delay: bool) -> float:
        if found_since_last_delay:
            self.current, self._exponent = self.minimum, 0
        elif self.current < self.maximum:
            step = self._rng.uniform(1 - _RANDOMIZATION, 1 + _RANDOMIZATION) * (2**self._exponent) * self.minimum
            candidate = self.minimum + step
            if candidate < self.maximum:
                self.current = candidate
                self._exponent += 1
            else:
                self.current = self.maximum
        return self.current


# --- indexing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueFunction:
    name: str
    queue_name: str
    connection: str
    trigger_arg: str
    user_function: Callable[..., Any] = field(repr=False)
    is_async: bool = False
    takes_context: bool = False
    output_bindings: tuple[str, ...] = ()
    error: str | None = None


def index_queue_functions(app: func.FunctionApp) -> list[QueueFunction]:
    """The app's queue-triggered functions (the app must be indexed freshly: see indexing.index_functions)."""
    if getattr(app, "functions_bindings", None):
        app.functions_bindings = None
    found: list[QueueFunction] = []
    for fn in app.get_functions():
        trigger = fn.get_trigger()
        if trigger is None or trigger.get_binding_name() != "queueTrigger":
            continue
        user_function = fn.get_user_function()
        takes_context, outputs, error, _warnings = binding_problems(fn, trigger.name)
        found.append(
            QueueFunction(
                name=fn.get_function_name() or user_function.__name__,
                queue_name=str(trigger.queue_name),  # type: ignore[attr-defined]  # QueueTrigger declares it
                connection=str(getattr(trigger, "connection", None) or "AzureWebJobsStorage"),
                trigger_arg=trigger.name,
                user_function=user_function,
                is_async=inspect.iscoroutinefunction(user_function),
                takes_context=takes_context,
                output_bindings=outputs,
                error=error,
            )
        )
    return found


def queue_clients(connection: str, queue_name: str) -> tuple[Any, Any]:
    """(queue, poison queue) clients for the connection setting named `connection`, as the host resolves it."""
    from azure.storage.queue import QueueClient

    options: dict[str, Any] = {"connection_timeout": 5, "read_timeout": 30, "retry_total": 1}
    value = os.environ.get(connection) or os.environ.get(f"AzureWebJobs{connection}")
    if value:
        return (
            QueueClient.from_connection_string(value, queue_name, **options),
            QueueClient.from_connection_string(value, queue_name + POISON_SUFFIX, **options),
        )
    uri = os.environ.get(f"{connection}__queueServiceUri")
    account = os.environ.get(f"{connection}__accountName")
    if not uri and account:
        uri = f"https://{account}.queue.core.windows.net"
    if not uri:
        raise LookupError(f"the connection setting '{connection}' (or '{connection}__queueServiceUri') is not set")
    from azure.identity import DefaultAzureCredential

    credential = DefaultAzureCredential(managed_identity_client_id=os.environ.get(f"{connection}__clientId"))
    return (
        QueueClient(uri, queue_name, credential=credential, **options),
        QueueClient(uri, queue_name + POISON_SUFFIX, credential=credential, **options),
    )


# --- one listener per function --------------------------------------------------------------------


def decode_body(text: str, encoding: str) -> bytes:
    if encoding == "none":
        return text.encode("utf-8")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the message is not valid base64 (host.json messageEncoding is base64)") from None


@dataclass(frozen=True)
class _Context:
    invocation_id: str
    function_name: str
    function_directory: str
    trace_context: Any = None
    retry_context: Any = None


class _Out:
    def __init__(self) -> None:
        self._value: object = None

    def set(self, val: object) -> None:
        self._value = val

    def get(self) -> object:
        return self._value


class QueueListener:
    """Polls one queue and runs one function for its messages, by the rules in the module docstring."""

    def __init__(
        self,
        function: QueueFunction,
        queue: Any,
        poison: Any,
        options: QueueOptions,
        *,
        lease: float = DEFAULT_LEASE,
        rng: random.Random | None = None,
    ) -> None:
        self.function = function
        self.queue = queue
        self.poison = poison
        self.options = options
        self.lease = max(1, round(lease))
        self.backoff = Backoff(options.max_polling_interval, rng=rng)
        self._stop = threading.Event()
        self._processing: set[Future[None]] = set()
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(
            max_workers=options.batch_size + options.new_batch_threshold, thread_name_prefix=f"queue-{function.name}"
        )
        self._thread: threading.Thread | None = None
        self._queue_exists = False

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"poll-{self.function.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._executor.shutdown(wait=True, cancel_futures=True)

    def run(self) -> None:
        found_since_last_delay = False
        while not self._stop.is_set():
            try:
                found = self.poll_once()
            except Exception as exc:  # a storage error backs off like an empty queue (the listener does)
                log.warning("queue '%s' poll failed: %s", self.function.queue_name, exc)
                self._queue_exists = False
                found = 0
            if found:
                found_since_last_delay = True
                self._wait_for_threshold()
                continue
            self._stop.wait(self.backoff.next_delay(found_since_last_delay))
            found_since_last_delay = False

    def poll_once(self) -> int:
        """Receive one batch and hand each message to a worker thread; returns how many arrived."""
        if not self._queue_exists:
            from azure.core.exceptions import ResourceExistsError

            with contextlib.suppress(ResourceExistsError):
                self.queue.create_queue()
            self._queue_exists = True
        batch = list(
            self.queue.receive_messages(
                messages_per_page=self.options.batch_size,
                max_messages=self.options.batch_size,
                visibility_timeout=self.lease,
            )
        )
        for message in batch:
            future = self._executor.submit(self.process, message)
            with self._lock:
                self._processing.add(future)
            future.add_done_callback(self._done)
        return len(batch)

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._processing.discard(future)

    def _wait_for_threshold(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                pending = set(self._processing)
            if len(pending) <= self.options.new_batch_threshold:
                return
            wait(pending, timeout=0.5, return_when="FIRST_COMPLETED")

    def drain(self, timeout: float = 30.0) -> None:
        """Wait for the messages in hand (tests)."""
        with self._lock:
            pending = set(self._processing)
        wait(pending, timeout=timeout)

    # --- one message -------------------------------------------------------------------------
    def process(self, message: Any) -> None:
        name = self.function.name
        if message.dequeue_count > self.options.max_dequeue_count:
            log.warning("message %s of '%s' dequeued %d times: to the poison queue unrun", message.id, name,
                        message.dequeue_count)  # fmt: skip
            self._to_poison(message)
            return
        holder = {"message": message}
        renewing = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(holder, renewing), daemon=True)
        renewer.start()
        invocation_id = str(uuid.uuid4())
        log.info("Executing 'Functions.%s' (Reason='New queue message detected on '%s'.', Id=%s)", name,
                 self.function.queue_name, invocation_id)  # fmt: skip
        started = time.perf_counter()
        try:
            self._invoke(message, invocation_id)
            failure: BaseException | None = None
        except BaseException as exc:  # as the worker: even SystemExit fails only the invocation
            failure = exc
        finally:
            renewing.set()
            renewer.join()
        message = holder["message"]
        elapsed = (time.perf_counter() - started) * 1000
        if failure is None:
            log.info("Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)", name, invocation_id, elapsed)
            self.queue.delete_message(message.id, message.pop_receipt)
            return
        log.error("Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms): %s: %s", name, invocation_id, elapsed,
                  type(failure).__name__, failure)  # fmt: skip
        if message.dequeue_count >= self.options.max_dequeue_count:
            log.warning("message %s of '%s' failed %d times: moved to '%s'", message.id, name, message.dequeue_count,
                        self.function.queue_name + POISON_SUFFIX)  # fmt: skip
            self._to_poison(message)
        else:
            self.queue.update_message(
                message.id, message.pop_receipt, visibility_timeout=round(self.options.visibility_timeout)
            )

    def _renew(self, holder: dict[str, Any], done: threading.Event) -> None:
        # The lease is renewed when half of it has passed, for as long as the function runs.
        while not done.wait(self.lease / 2):
            message = holder["message"]
            try:
                receipt = self.queue.update_message(message.id, message.pop_receipt, visibility_timeout=self.lease)
                message.pop_receipt = receipt.pop_receipt
            except Exception as exc:
                log.warning("could not renew the lease of message %s: %s", message.id, exc)

    def _invoke(self, message: Any, invocation_id: str) -> None:
        import asyncio

        from azure.functions.queue import QueueMessage

        body = decode_body(message.content, self.options.message_encoding)
        argument = QueueMessage(  # type: ignore[no-untyped-call]
            id=message.id,
            body=body,
            dequeue_count=message.dequeue_count,
            expiration_time=message.expires_on,
            insertion_time=message.inserted_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )
        fn = self.function
        kwargs: dict[str, Any] = {fn.trigger_arg: argument}
        if fn.takes_context:
            kwargs["context"] = _Context(invocation_id, fn.name, os.getcwd())
        for out in fn.output_bindings:
            kwargs[out] = _Out()
        result = fn.user_function(**kwargs)
        if inspect.isawaitable(result):
            asyncio.run(result)  # type: ignore[arg-type]

    def _to_poison(self, message: Any) -> None:
        from azure.core.exceptions import ResourceExistsError

        with contextlib.suppress(ResourceExistsError):
            self.poison.create_queue()
        # The poison copy keeps the body as it was sent (still encoded), like the host's copy.
        self.poison.send_message(message.content)
        self.queue.delete_message(message.id, message.pop_receipt)


# --- the dev host's hook --------------------------------------------------------------------------


class QueueRunner:
    """Every queue-triggered function of the app, each with its listener; started with the dev host."""

    def __init__(self, listeners: list[QueueListener], errors: dict[str, str]) -> None:
        self.listeners = listeners
        self.errors = errors

    @property
    def function_names(self) -> set[str]:
        return {listener.function.name for listener in self.listeners}

    def start(self) -> None:
        for listener in self.listeners:
            log.info("queue listener for '%s' on '%s' started", listener.function.name, listener.function.queue_name)
            listener.start()

    def stop(self) -> None:
        for listener in self.listeners:
            listener.stop()


def build_queue_runner(
    app: func.FunctionApp, host_json: str | os.PathLike[str] | None, *, lease: float = DEFAULT_LEASE
) -> QueueRunner:
    options = read_queue_options(host_json)
    # Every poll would log its request and response at INFO; the host does not show them either.
    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
    listeners: list[QueueListener] = []
    errors: dict[str, str] = {}
    for fn in index_queue_functions(app):
        if fn.error:
            errors[fn.name] = fn.error
            continue
        try:
            queue, poison = queue_clients(fn.connection, fn.queue_name)
        except LookupError as exc:
            errors[fn.name] = f"not run: {exc}"
            continue
        listeners.append(QueueListener(fn, queue, poison, options, lease=lease))
    for name, error in errors.items():
        log.warning("The '%s' function is in error: %s", name, error)
    return QueueRunner(listeners, errors)
