"""Build steps: files generated from the code and committed, each with a `--check` the tests run.

python -m tools.build.export_openapi    # infra/openapi.json, what API Management imports
python -m tools.build.gen_docs          # the generated parts of docs/
"""
