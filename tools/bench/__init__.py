"""Benchmarks of the memory service: retrieval quality on LoCoMo and speed under synthetic load.

    python -m tools.bench locomo --data FILE [--url URL] [--baseline mem0] [--out results.json]
    python -m tools.bench load [--sizes 1000,10000] [--others 50000] [--store embedded|chroma|both] [--quick]

Both talk to the service over HTTP, as a client would; unless `--url` is given they start their own
dev host on the zero-setup default with a fresh data folder, and stop it. See "Benchmarks" in README.md.
"""
