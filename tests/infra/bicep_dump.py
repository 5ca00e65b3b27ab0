"""Parse every .bicep file under a folder and print one JSON document describing them.

Runs with the interpreter of the infra tool venv (it needs pycep-parser and tree-sitter-bicep, which
live there, away from the app's dependencies); the tests in this folder call it through subprocess.

Output: {"<path relative to the folder>": {"pycep": <pycep JSON or null>, "pycep_error": str | null,
"tree_sitter_errors": ["line:col kind", ...], "syntax": <what tree-sitter sees, below>}}

"syntax" holds what the deploy-time checks need, read from the tree-sitter tree (pycep folds property
chains and string interpolations into shapes that are hard to walk):
  {"symbols": {"<name>": "param" | "var" | "resource" | "module" | "output" | ...},
   "variables": {"<name>": <expression>},
   "names": [{"symbol": str, "kind": "resource" | "module", "line": int, "expression": <expression>}]}
An <expression> is the syntax tree of the value, named nodes only: {"t": node type, "v": text of an
identifier, "c": [children]}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import tree_sitter_bicep
from pycep import BicepParser
from tree_sitter import Language, Node, Parser


def _tree_sitter_errors(root: Node) -> list[str]:
    errors: list[str] = []
    stack: list[Node] = [root]
    while stack:
        node = stack.pop()
        if node.type == "ERROR" or node.is_missing:
            row, column = node.start_point
            errors.append(f"{row + 1}:{column + 1} {'missing ' + node.type if node.is_missing else 'syntax error'}")
        elif node.has_error:
            stack.extend(node.children)
    return sorted(errors)


_DECLARATIONS = {
    "parameter_declaration": "param",
    "variable_declaration": "var",
    "resource_declaration": "resource",
    "module_declaration": "module",
    "output_declaration": "output",
    "user_defined_function": "func",
    "type_declaration": "type",
}
_LEAVES = {"identifier", "property_identifier", "loop_variable", "loop_enumerator"}


def _expression(node: Node) -> dict[str, object]:
    if node.type in _LEAVES:
        return {"t": node.type, "v": node.text.decode() if node.text else ""}
    return {"t": node.type, "c": [_expression(child) for child in node.named_children]}


def _body(declaration: Node) -> Node | None:
    """The `{ ... }` of a resource or module, also under `if (...)` and `[for ...: ...]`."""
    for child in declaration.named_children:
        while child.type in {"for_statement", "if_statement"}:
            child = child.named_children[-1]
        if child.type == "object":
            return child
    return None


def _syntax(root: Node) -> dict[str, object]:
    symbols: dict[str, str] = {}
    variables: dict[str, object] = {}
    names: list[dict[str, object]] = []

    def declare(declaration: Node) -> None:
        kind = _DECLARATIONS[declaration.type]
        identifier = next((c for c in declaration.named_children if c.type == "identifier"), None)
        if identifier is None or identifier.text is None:
            return
        symbol = identifier.text.decode()
        symbols[symbol] = kind
        if kind == "var":
            variables[symbol] = _expression(declaration.named_children[-1])
        if kind not in {"resource", "module"}:
            return
        body = _body(declaration)
        for prop in body.named_children if body is not None else []:
            if prop.type != "object_property":
                continue
            key, value = prop.named_children[0], prop.named_children[-1]
            if key.type == "resource_declaration":  # a nested child resource
                declare(key)
            elif key.type == "identifier" and key.text == b"name" and value is not key:
                names.append(
                    {"symbol": symbol, "kind": kind, "line": prop.start_point[0] + 1, "expression": _expression(value)}
                )

    for node in root.named_children:
        if node.type in _DECLARATIONS:
            declare(node)
    return {"symbols": symbols, "variables": variables, "names": names}


def main(folder: str) -> None:
    root = Path(folder)
    tree_sitter = Parser(Language(tree_sitter_bicep.language()))
    pycep = BicepParser()
    result: dict[str, dict[str, object]] = {}
    for path in sorted(root.rglob("*.bicep")):
        source = path.read_bytes()
        tree = tree_sitter.parse(source)
        entry: dict[str, object] = {
            "tree_sitter_errors": _tree_sitter_errors(tree.root_node),
            "syntax": _syntax(tree.root_node),
        }
        try:
            entry["pycep"] = pycep.parse(text=source.decode("utf-8"))
            entry["pycep_error"] = None
        except Exception as error:
            entry["pycep"] = None
            entry["pycep_error"] = f"{type(error).__name__}: {error}"[:2000]
        result[path.relative_to(root).as_posix()] = entry
    json.dump(result, sys.stdout, default=str)


if __name__ == "__main__":
    main(sys.argv[1])
