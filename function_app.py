"""The Functions entry point: one FunctionApp, one Blueprint per area.

The host indexes functions by importing this module, so it must stay cheap: no I/O, no model,
no mem0 import. Everything heavy is built on first use (shared/runtime.py).
"""

import azure.functions as func

from functions import docs
from functions.chat import bp as chat_bp
from functions.docs import bp as docs_bp
from functions.ingest import bp as ingest_bp
from functions.maintenance import bp as maintenance_bp
from functions.mcp import bp as mcp_bp
from functions.memory import bp as memory_bp
from functions.system import bp as system_bp
from shared.observability.logs import configure_logging

configure_logging()

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
for blueprint in (chat_bp, memory_bp, ingest_bp, system_bp, docs_bp, mcp_bp, maintenance_bp):
    app.register_functions(blueprint)
docs.bind(app)
