"""The servers that tests and benchmarks start: Azurite, Chroma, Neo4j and a fake OpenAI.

Plain classes with no pytest in them, so `tools/` can use them as well as the tests; the pytest
fixtures over them live in tests/fixtures/harness.py. Installs: INSTALL.md beside this file.
"""
