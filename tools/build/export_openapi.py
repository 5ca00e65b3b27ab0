"""Write infra/openapi.json: the OpenAPI 3.0 rendition of the app's API that API Management imports.

The app serves its OpenAPI 3.1 document itself (/openapi.json); this file is made from the same
document by tools.build.openapi_apim (3.0 spelling, without what APIM does not use), see that module.

python -m tools.build.export_openapi           # write it
python -m tools.build.export_openapi --check   # exit 1 if the committed file is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from function_app import app
from functions.openapi import build_openapi_document, render
from tools.build.openapi_apim import apim_document

TARGET = Path(__file__).resolve().parents[2] / "infra" / "openapi.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare, do not write")
    args = parser.parse_args(argv)
    # Indented by one: still one line per key for readable diffs, and a fifth less against the import budget.
    text = render(apim_document(build_openapi_document(app)), indent=1)
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET} is stale: run python -m tools.build.export_openapi", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET} ({len(text):,} characters)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
