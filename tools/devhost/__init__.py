"""A local stand-in for Azure Functions Core Tools (`func start`) that serves HTTP functions.

Core Tools cannot be installed here (its installer downloads a binary), so local runs and end-to-end
tests use this instead. It is not a second implementation of the API: it knows no route by name.
It indexes the real `FunctionApp` (`app.get_functions()`, like the worker's indexing), reads
`extensions.http.routePrefix` from host.json, routes requests with the Functions host's rules and
calls the user functions the way the Python worker does, then serves them on uvicorn.

    python -m tools.devhost --host 127.0.0.1 --port 7071 [--app function_app:app] [--host-json host.json]

Where the real stack behaves in a surprising way the dev host copies it, so tests catch it locally.
The sources are cited next to each rule; "host" is Azure/azure-functions-host, "worker" is
Azure/azure-functions-python-worker, "extensions" is Azure/azure-webjobs-sdk-extensions:

- A request whose path matches but whose method does not gets 404 with an empty body, not 405: the
  method is a route constraint (HttpMethodRouteConstraint in host
  src/WebJobs.Script.WebHost/WebScriptHostHttpRoutesManager.cs), see host issue #10098. HEAD is not
  derived from GET either (host issue #11625).
- An empty route means the function name, as a missing route does (same file, and
  ScriptHost.ValidateHttpFunction): a function cannot be served at the bare prefix/root.
- Query values and header values that repeat are joined with "," and empty query values are dropped
  (StringValues.ToString() in host src/WebJobs.Script.Grpc/MessageExtensions/
  GrpcMessageConversionExtensions.cs, ToRpcHttp).
- A function may return only `func.HttpResponse` or `str` (the library's HttpResponseConverter,
  which the worker calls); anything else fails the invocation (500).

One rule deliberately differs: by default overlapping routes are tried in ASP.NET Core precedence
order (literal before parameter, constrained before unconstrained, catch-all last), while the host
tries them in function-name order and takes the first match (host FunctionMetadataManager sorts by
name; extensions WebJobsRouteBuilder.Build keeps that order; host issues #9876 and #3153, extensions
PR #842 still open). `--route-order host` copies the host, and every overlapping pair the two orders
resolve differently is logged at start.

Core Tools also loads local.settings.json into the environment; here that takes `--local-settings`,
so that test hosts started with a clean environment stay clean.

Function keys are not checked by default (like Core Tools). `--enforce-keys` (or DEVHOST_ENFORCE_KEYS=true)
checks them as the host does in Azure: a key in the `x-functions-key` header, else in the `code` query
parameter; `anonymous` needs none, `function` takes a host key, that function's key or the master key,
`admin` only the master key; a missing or wrong key is an empty 401 before the function runs. Keys come
from `--keys-file`, the DEVHOST_KEYS setting (inline JSON) or DEVHOST_KEYS_FILE, in the shape
`az functionapp keys list` prints plus per-function keys (FunctionKeys); with none, keys are generated
and printed.

The modules, each importing only those listed before it: `templates` (route templates), `indexing` (the
app and its functions), `routing`, `messages` (request and response conversion), `invocation` (the
`context` argument, the worker thread), `keys`, `tracing`, `asgi` (the application), `mcp`, `queues`,
`timers` (the other triggers), `host` (all of it assembled from an app), `serve` (uvicorn), `cli`.
"""
