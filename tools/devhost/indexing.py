"""The app as the worker indexes it: import `module:attribute`, `app.get_functions()` afresh, the HTTP
functions the dev host serves, and the worker's rule that a function's parameters and bindings agree
(the HTTP side and the queue side, `queues.py`, load functions through it)."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import azure.functions as func


@dataclass(frozen=True)
class HttpFunction:
    """What the dev host needs of one HTTP-triggered function of the app."""

    name: str
    route: str
    methods: frozenset[str] | None
    auth_level: str
    trigger_arg: str
    user_function: Callable[..., Any] = field(repr=False)
    is_async: bool = False
    takes_context: bool = False
    output_bindings: tuple[str, ...] = ()
    declared_route: str | None = None
    error: str | None = None
    warnings: tuple[str, ...] = ()


def binding_problems(fn: func.Function, trigger_arg: str) -> tuple[bool, tuple[str, ...], str | None, list[str]]:
    """(takes_context, output binding names, error, warnings) from the signature and the bindings.

    The worker refuses to load a function whose parameters and bindings disagree
    (worker azure_functions_worker/functions.py), so the dev host puts it in error the same way.
    """
    from azure.functions.decorators.core import BindingDirection

    user_function = fn.get_user_function()
    params = list(inspect.signature(user_function).parameters)
    bindings = [b for b in fn.get_bindings() if b.name != "$return"]
    names = {b.name for b in bindings}
    takes_context = "context" in params and "context" not in names
    unbound = [p for p in params if p not in names and not (p == "context" and takes_context)]
    missing = sorted(names - set(params))
    if unbound:
        return takes_context, (), f"parameters {unbound} are declared in Python but are not bindings", []
    if missing:
        return takes_context, (), f"bindings {missing} are not parameters of the Python function", []
    outputs: list[str] = []
    warnings: list[str] = []
    for binding in bindings:
        if binding.name == trigger_arg:
            continue
        kind = binding.get_binding_name()
        if binding.direction == BindingDirection.IN.value:
            return takes_context, (), f"the dev host cannot provide the '{binding.name}' input binding ({kind})", []
        outputs.append(binding.name)
        warnings.append(f"output binding '{binding.name}' ({kind}) is accepted and discarded by the dev host")
    return takes_context, tuple(outputs), None, warnings


def fresh_functions(app: func.FunctionApp) -> list[func.Function]:
    """`app.get_functions()`, indexed afresh."""
    # get_functions() keeps the names it saw in `functions_bindings` and reports them all as duplicates on
    # a second call; the worker indexes once per process, so a fresh index here is the faithful one.
    if getattr(app, "functions_bindings", None):
        app.functions_bindings = None
    return list(app.get_functions())


def index_functions(app: func.FunctionApp) -> tuple[list[HttpFunction], list[tuple[str, str]]]:
    """The app's HTTP functions, and (name, trigger type) of the others, which the dev host does not run.

    `get_functions()` validates the app like the worker's indexing (unique names, one trigger each).
    """
    from azure.functions.decorators.http import HttpTrigger

    http: list[HttpFunction] = []
    others: list[tuple[str, str]] = []
    for fn in fresh_functions(app):
        user_function = fn.get_user_function()
        name = fn.get_function_name() or user_function.__name__
        trigger = fn.get_trigger()
        if not isinstance(trigger, HttpTrigger):
            others.append((name, trigger.get_binding_name() if trigger is not None else "no trigger"))
            continue
        declared = trigger.route
        warnings: list[str] = []
        if declared is None or not declared.strip():
            if declared is not None:
                warnings.append(
                    f"its route is empty, which the Functions host maps to the function name '{name}', not to the "
                    "bare prefix (Azure/Azure-Functions#2473); a route of '{ignored:maxlength(0)?}' serves the bare "
                    "prefix"
                )
            route = name
        else:
            route = declared
        methods = frozenset(str(getattr(m, "value", m)).upper() for m in trigger.methods) if trigger.methods else None
        auth = trigger.auth_level
        trigger_arg = trigger.name
        takes_context, outputs, error, binding_warnings = binding_problems(fn, trigger_arg)
        http.append(
            HttpFunction(
                name=name,
                route=route,
                methods=methods,
                auth_level=str(getattr(auth, "value", auth) or "function").lower(),
                trigger_arg=trigger_arg,
                user_function=user_function,
                is_async=inspect.iscoroutinefunction(user_function),
                takes_context=takes_context,
                output_bindings=outputs,
                declared_route=declared,
                error=error,
                warnings=(*warnings, *binding_warnings),
            )
        )
    return http, others


def load_app(spec: str) -> func.FunctionApp:
    """Import `module:attribute` (attribute defaults to `app`) and return the FunctionApp."""
    module_name, _, attribute = spec.partition(":")
    if not module_name:
        raise ValueError(f"--app must look like module:attribute, not {spec!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    target: Any = importlib.import_module(module_name)
    for part in (attribute or "app").split("."):
        target = getattr(target, part)
    if not callable(getattr(target, "get_functions", None)):
        raise TypeError(f"{spec} is a {type(target).__name__}, not a FunctionApp")
    return cast("func.FunctionApp", target)
