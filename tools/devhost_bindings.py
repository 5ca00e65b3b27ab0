"""Whether a function's parameters and bindings agree, by the worker's rule: the dev host's HTTP side
(tools/devhost.py) and its queue side (tools/devhost_queues.py) both load functions through it."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import azure.functions as func


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
