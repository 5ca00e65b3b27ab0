"""The sample FunctionApp (sample_app.py, host.json) that the dev host's own tests serve:
tests/unit/test_devhost_asgi.py in process, tests/e2e/test_devhost_server.py over HTTP."""
