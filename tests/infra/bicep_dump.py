"""Parse every .bicep file under a folder and print one JSON document describing them.

Runs with the interpreter of the infra tool venv (it needs pycep-parser and tree-sitter-bicep, which
live there, away from the app's dependencies); the tests in this folder call it through subprocess.

Output: {"<path relative to the folder>": {"pycep": <pycep JSON or null>, "pycep_error": str | null,
"tree_sitter_errors": ["line:col kind", ...]}}
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import tree_sitter_bicep
from pycep import BicepParser
from tree_sitter import Language, Node, Parser


def _tree_sitter_errors(parser: Parser, source: bytes) -> list[str]:
    errors: list[str] = []
    stack: list[Node] = [parser.parse(source).root_node]
    while stack:
        node = stack.pop()
        if node.type == "ERROR" or node.is_missing:
            row, column = node.start_point
            errors.append(f"{row + 1}:{column + 1} {'missing ' + node.type if node.is_missing else 'syntax error'}")
        elif node.has_error:
            stack.extend(node.children)
    return sorted(errors)


def main(folder: str) -> None:
    root = Path(folder)
    tree_sitter = Parser(Language(tree_sitter_bicep.language()))
    pycep = BicepParser()
    result: dict[str, dict[str, object]] = {}
    for path in sorted(root.rglob("*.bicep")):
        source = path.read_bytes()
        entry: dict[str, object] = {"tree_sitter_errors": _tree_sitter_errors(tree_sitter, source)}
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
