"""The OpenAPI document and the service agree, checked by schemathesis against the real app.

The dev host serves the real FunctionApp with function keys enforced (as in Azure) and a fake OpenAI
server behind it, so chat answers instead of `llm_not_configured`. schemathesis reads `/openapi.json`
over HTTP, generates positive and negative requests for every operation (a bounded number, from a
fixed seed, deterministically), sends them with the host key and runs every check it has but the
excluded ones below. The run fails on any 5xx, any response that does not match its schema, any
schema-valid request refused and any schema-invalid one accepted.

Excluded checks, each for a reason:
- `unsupported_method`: the Functions host answers a method a route does not serve with 404, not 405
  (the method is a route constraint; see tools/devhost/), and the app cannot change that.
- `use_after_free` / `ensure_resource_availability` / `object_level_authorization`: stateful
  resource checks that need links between operations, which the document does not declare; deletion
  and ownership are tested by tests/e2e/test_api_isolation.py and tests/integration/test_erasure.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO, DevHost
from tools.harness.fake_openai import FakeOpenAIServer

HOST_KEY = "schemathesis-host-key"
KEYS = {"masterKey": "schemathesis-master-key", "functionKeys": {"default": HOST_KEY}}
EXCLUDED = ["unsupported_method", "use_after_free", "ensure_resource_availability", "object_level_authorization"]
SEED = 20240501
CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES_PER_OPERATION = 12


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevHost]:
    root = tmp_path_factory.mktemp("schemathesis")
    with FakeOpenAIServer() as llm:
        env = {"LLM_PROVIDER": "openai", "OPENAI_BASE_URL": llm.base_url, "OPENAI_API_KEY": "k", "OPENAI_MODEL": "m"}
        host = DevHost(root / "data", env=env, name="schemathesis", keys=KEYS).start()
        yield host
        host.stop()


def test_schemathesis_finds_no_disagreement(host: DevHost, tmp_path: Path) -> None:
    report = tmp_path / "junit.xml"
    argv = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run", f"{host.base_url}/openapi.json",
        "--header", f"x-functions-key: {HOST_KEY}",
        "--checks", "all", "--exclude-checks", ",".join(EXCLUDED),
        "--mode", "all", "--phases", "examples,coverage,fuzzing",
        "--max-examples", str(EXAMPLES_PER_OPERATION), "--seed", str(SEED), "--generation-deterministic",
        "--no-shrink", "--workers", "1", "--request-timeout", "30",
        "--no-color", "--report", "junit", "--report-junit-path", str(report),
    ]  # fmt: skip
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    shown = "\n".join(line[:400] for line in output.splitlines())  # generated bodies can be megabytes long
    assert done.returncode == 0, shown[-15000:] + "\n--- host log ---\n" + host.log()[-3000:]
    # The run really tested the API: every operation, with requests that reached the functions.
    assert "Tested: 2" in output and "Selected: " in output, output[-3000:]
    generated = re.search(r"(\d+) generated", output)
    assert generated is not None and int(generated.group(1)) >= 300, output[-3000:]
    print(f"schemathesis: {generated.group(1)} generated cases")
    log = host.process.log_path.read_text(errors="replace")
    for accepted in ("POST /api/memory/add -> 200", "POST /api/memory/search -> 200", "POST /api/chat/message -> 200"):
        assert accepted in log, accepted
    assert "-> 422" in log and "-> 400" in log  # negative cases reached the validators
    assert "Unauthorized: " in log  # ignored_auth sent requests without the key, and they were refused
    assert "-> 5" not in log
