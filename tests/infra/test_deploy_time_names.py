"""No resource or module name depends on a value known only while the deployment runs (Bicep BCP120).

A name must be computable when the deployment starts: from parameters, literals, deploy-time functions
(uniqueString, subscription(), ...), and the name, id, type or apiVersion of a resource. A property
of another resource (`x.properties.*`), a module output, reference() or a list*() call is not, and
`bicep build` rejects the file, which fails main.bicep too (BCP104), whatever its conditions say.
No Bicep compiler runs here, so this walks the tree-sitter syntax of each name, through variables.
Values a parent hands to a module are the fix: inside the module they are parameters.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from infra_support import dump_bicep

# What of a resource is known when the deployment starts; of a module, only its (deployment) name.
RESOURCE_DEPLOY_TIME_PROPERTIES = {"name", "id", "type", "apiVersion"}
MODULE_DEPLOY_TIME_PROPERTIES = {"name"}
# Functions whose value comes from a resource at run time.
RUNTIME_FUNCTIONS = {"reference", "getSecret"}


def _chain(node: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """`a.b.c` as (a, ["b", "c"]); `a::b.c` as (a, ["::b", "c"])."""
    properties: list[str] = []
    while node["t"] in {"member_expression", "resource_expression"}:
        base, accessed = node["c"][0], node["c"][-1]
        properties.insert(0, ("::" if node["t"] == "resource_expression" else "") + accessed.get("v", "?"))
        node = base
    return node, properties


def runtime_uses(expression: dict[str, Any], syntax: dict[str, Any], seen: frozenset[str] = frozenset()) -> list[str]:
    """The parts of `expression` that only the running deployment knows, variables followed."""
    symbols: dict[str, str] = syntax["symbols"]
    kind = expression["t"]
    if kind == "identifier":
        name = expression["v"]
        if symbols.get(name) == "var" and name not in seen:
            return [f"{name} -> {use}" for use in runtime_uses(syntax["variables"][name], syntax, seen | {name})]
        if symbols.get(name) in {"resource", "module"}:
            return [f"{name} (the whole {symbols[name]})"]
        return []
    if kind in {"member_expression", "resource_expression"}:
        base, properties = _chain(expression)
        if base["t"] == "identifier" and symbols.get(base["v"]) in {"resource", "module"}:
            allowed = (
                RESOURCE_DEPLOY_TIME_PROPERTIES if symbols[base["v"]] == "resource" else MODULE_DEPLOY_TIME_PROPERTIES
            )
            # A child resource reached with `::` is a resource too: look past the accessors.
            plain = [prop for prop in properties if not prop.startswith("::")]
            if not plain or plain[0] not in allowed:
                return [f"{base['v']}{''.join(p if p.startswith('::') else '.' + p for p in properties)}"]
            return []
        return runtime_uses(base, syntax, seen)
    if kind == "call_expression":
        function, arguments = expression["c"][0], expression["c"][-1]
        uses = []
        if function["t"] == "identifier":
            name = function["v"]
            if name in RUNTIME_FUNCTIONS or name.lower().startswith("list"):
                uses.append(f"{name}(...)")
        else:
            # x.listKeys(), vault.getSecret(...), az.resourceGroup(): judged as a member access.
            _, properties = _chain(function)
            method = properties[-1] if properties else ""
            if method in RUNTIME_FUNCTIONS or method.lower().startswith("list"):
                uses.append(f"{_chain(function)[0].get('v', '?')}.{method}(...)")
            else:
                uses += runtime_uses(function, syntax, seen)
        for argument in arguments.get("c", []):
            uses += runtime_uses(argument, syntax, seen)
        return uses
    uses = []
    for child in expression.get("c", []):
        uses += runtime_uses(child, syntax, seen)
    return uses


def runtime_names(bicep_files: dict[str, dict[str, Any]]) -> list[str]:
    problems = []
    for path, entry in sorted(bicep_files.items()):
        syntax = entry["syntax"]
        for name in syntax["names"]:
            for use in runtime_uses(name["expression"], syntax):
                problems.append(f"{path}:{name['line']}: the name of {name['kind']} {name['symbol']} uses {use}")
    return problems


def test_no_name_depends_on_a_runtime_value(bicep_files: dict[str, dict[str, Any]]) -> None:
    problems = runtime_names(bicep_files)
    assert not problems, (
        "resource/module names must be known when the deployment starts (BCP120); pass the value to a "
        "module as a parameter instead:\n" + "\n".join(problems)
    )


def test_every_resource_and_module_name_is_checked(bicep_files: dict[str, dict[str, Any]]) -> None:
    # The walk only sees what bicep_dump.py extracted: every declared resource and module has a name.
    for path, entry in bicep_files.items():
        syntax = entry["syntax"]
        declared = {symbol for symbol, kind in syntax["symbols"].items() if kind in {"resource", "module"}}
        named = {name["symbol"] for name in syntax["names"]}
        assert declared == named, f"{path}: names not extracted for {sorted(declared - named)}"


CASES = """
param prefix string
param items array = []
var fromParam = '${prefix}-x'
var fromEnvironment = environment.properties.defaultDomain
var indirect = toLower(fromEnvironment)

resource environment 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: '${prefix}-env'
}

resource okFromParam 'Microsoft.Network/privateDnsZones@2020-06-01' = {
  name: fromParam
}

resource okFromResourceName 'Microsoft.Storage/storageAccounts/fileServices@2023-05-01' = {
  name: '${environment.name}-${uniqueString(environment.id, subscription().id)}'
}

resource okLoop 'Microsoft.Network/privateDnsZones@2020-06-01' = [for item in items: {
  name: item.name
}]

resource badProperty 'Microsoft.Network/privateDnsZones@2020-06-01' = {
  name: environment.properties.defaultDomain
}

resource badThroughVariables 'Microsoft.Network/privateDnsZones@2020-06-01' = if (!empty(prefix)) {
  name: indirect
}

resource badListKeys 'Microsoft.Network/privateDnsZones@2020-06-01' = {
  name: environment.listKeys().keys[0].value
}

resource badReference 'Microsoft.Network/privateDnsZones@2020-06-01' = {
  name: reference(environment.id, '2024-03-01').defaultDomain
}

module okModule 'other.bicep' = {
  name: 'dns-${prefix}'
  params: {
    zoneName: environment.properties.defaultDomain
  }
}

resource badModuleOutput 'Microsoft.Network/privateDnsZones@2020-06-01' = {
  name: okModule.outputs.zoneName
}

module badModuleName 'other.bicep' = {
  name: environment.properties.staticIp
}
"""


def test_the_check_catches_every_kind_of_runtime_name(tmp_path: Path) -> None:
    # The check itself, on a file with one name of each kind: it must flag exactly the bad ones.
    (tmp_path / "cases.bicep").write_text(textwrap.dedent(CASES))
    (tmp_path / "other.bicep").write_text("param zoneName string = ''\n")
    problems = runtime_names(dump_bicep(tmp_path))
    flagged = {problem.split(" uses ")[0].rsplit(" ", 1)[1] for problem in problems}
    assert flagged == {
        "badProperty",
        "badThroughVariables",
        "badListKeys",
        "badReference",
        "badModuleOutput",
        "badModuleName",
    }, "\n".join(problems)
    assert any("indirect -> fromEnvironment -> environment.properties.defaultDomain" in p for p in problems)
