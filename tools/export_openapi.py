"""Write the generated OpenAPI document to infra/openapi.json (what API Management imports).

python -m tools.export_openapi           # write it
python -m tools.export_openapi --check   # exit 1 if the committed file is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import function_app
from shared.openapi import build_openapi_document, render

TARGET = Path(__file__).resolve().parent.parent / "infra" / "openapi.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only compare, do not write")
    args = parser.parse_args(argv)
    text = render(build_openapi_document(function_app.app))
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET} is stale: run python -m tools.export_openapi", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
