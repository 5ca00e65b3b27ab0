"""The manual's generated parts are what the generator makes now (`python -m tools.build.gen_docs`):
docs/configuration.md from `Settings`, docs/api.md from infra/openapi.json. Also: every variable
the service reads from the environment is documented, and the generator leaves no field out."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shared.settings import REPO_ROOT, Settings
from tools.build import gen_docs

# A literal variable name read (or set) through os.environ / os.getenv.
_ENV_READ = re.compile(r"""(?:environ\.get|environ\.setdefault|environ\[|getenv)\(?\s*["']([A-Za-z_]\w*)["']""")


@pytest.mark.parametrize("page", sorted(gen_docs.PAGES))
def test_the_committed_page_holds_what_the_generator_makes(page: str) -> None:
    current = (gen_docs.DOCS / page).read_text(encoding="utf-8")
    assert current == gen_docs.expected(page, current), (
        f"docs/{page} differs from the generator's output: run {gen_docs.COMMAND} and commit the result"
    )


def test_every_setting_is_rendered_with_its_environment_name_and_description() -> None:
    table = gen_docs.render_settings()
    for name, field in Settings.model_fields.items():
        assert field.description, f"Settings.{name} needs a description= (it is the documentation)"
        row = next((line for line in table.splitlines() if line.startswith(f"| `{field.alias or name.upper()}` |")), "")
        assert row, f"{name} is missing from the generated settings table"
        assert gen_docs.cell(field.description) in row


def test_the_aliases_keep_their_spelling_and_paths_are_shown_relative() -> None:
    table = gen_docs.render_settings()
    assert "| `AzureWebJobsStorage` |" in table and "| `AzureWebJobsStorage__queueServiceUri` |" in table
    assert str(REPO_ROOT) not in table, "no path of this machine in the page"


def test_every_variable_the_service_reads_is_documented() -> None:
    sources = [REPO_ROOT / "function_app.py", *(REPO_ROOT / "shared").rglob("*.py")]
    sources += (REPO_ROOT / "functions").rglob("*.py")
    read = {name for path in sources for name in _ENV_READ.findall(path.read_text(encoding="utf-8"))}
    assert {"WEBSITE_INSTANCE_ID", "MEM0_DIR"} <= read, "the scan itself must find the known reads"
    settings = {(field.alias or name).upper() for name, field in Settings.model_fields.items()}
    listed = {name.upper() for name, _where, _what in gen_docs.OUTSIDE_SETTINGS}
    undocumented = sorted(name for name in read if name.upper() not in settings | listed)
    assert not undocumented, f"add these to OUTSIDE_SETTINGS in tools/build/gen_docs.py: {undocumented}"


def test_every_public_endpoint_and_request_body_is_in_the_reference() -> None:
    document = json.loads(gen_docs.OPENAPI.read_text(encoding="utf-8"))
    endpoints, bodies = gen_docs.render_endpoints(document), gen_docs.render_bodies(document)
    for path, operations in document["paths"].items():
        for method in operations:
            assert f"| `{method.upper()} {path}` |" in endpoints
    for schema in ("MemoryAddRequest", "MemorySearchRequest", "MemoryInput", "SearchFilters"):
        assert f"#### {schema}\n" in bodies
    assert "| `content` | string (1–8000 chars) | yes |" in bodies


def test_a_page_without_its_markers_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="markers"):
        gen_docs.expected("api.md", "# no markers here\n")
    (tmp_path / "api.md").write_text((gen_docs.DOCS / "api.md").read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "configuration.md").write_text("stale\n" + gen_docs.begin_marker("settings"), encoding="utf-8")
    with pytest.raises(ValueError):
        gen_docs.stale_pages(tmp_path)


def test_a_stale_part_is_reported(tmp_path: Path) -> None:
    for page in gen_docs.PAGES:
        text = (gen_docs.DOCS / page).read_text(encoding="utf-8")
        (tmp_path / page).write_text(text, encoding="utf-8")
    assert gen_docs.stale_pages(tmp_path) == []
    page = tmp_path / "configuration.md"
    page.write_text(page.read_text(encoding="utf-8").replace("| `LOG_LEVEL` |", "| `LOG_LEVELS` |"), encoding="utf-8")
    assert gen_docs.stale_pages(tmp_path) == ["configuration.md"]
