"""int8 weights for the ONNX embedder: activation smoothing, then dynamic quantisation.

Why: int8 matrix products embed about 2.3x as fast as fp32 on a CPU with VNNI/AMX, but quantising the
activations of a transformer per tensor loses the few channels whose range is far wider than the
rest. SmoothQuant (Xiao et al. 2023, arXiv:2211.10438) moves part of each input channel's range into
the weights, which are quantised per channel and absorb it: ``X W = (X / s) (s W)`` with
``s_j = max|X_j| ** alpha / max|W_j| ** (1 - alpha)``. The product is unchanged in exact arithmetic;
only what int8 has to represent changes. On NHS FFT comments this halves the distance of int8 vectors
from fp32 (mean cosine 0.9912 -> 0.9957, docs/benchmarks.md) at the same speed.

``max|X_j|`` comes from running the fp32 model over a fixed set of general sentences shipped with the
package (``calibration.txt``, written for this purpose), never over a user's data: the export must not
depend on which study was embedded first, and the wide channels of a transformer are a property of the
model, not of the text.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

CALIBRATION = Path(__file__).with_name("calibration.txt")
#: Ops whose constant second input (the weights, ``[in, out]``) is smoothed and quantised.
WEIGHTED_OPS = ("MatMul", "Attention")


def check_alpha(alpha: float | None) -> None:
    """Refuse a smoothing alpha outside (0, 1]; None means no smoothing."""
    if alpha is not None and not 0.0 < float(alpha) <= 1.0:
        raise ValueError(f"embed.onnx.smooth must lie in (0, 1] or be null, not {alpha}")


def calibration_texts() -> list[str]:
    return [line.strip() for line in CALIBRATION.read_text(encoding="utf-8").splitlines() if line.strip()]


def _weighted(model) -> list[int]:
    """Positions of the weighted ops in the graph's node list."""
    weights = {i.name for i in model.graph.initializer}
    return [k for k, n in enumerate(model.graph.node)
            if n.op_type in WEIGHTED_OPS and len(n.input) > 1 and n.input[1] in weights]


def activation_ranges(fp32_file: Path, token_ids: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
    """Largest absolute value of every input channel of each weighted op, over real (unpadded) tokens."""
    import onnx
    import onnxruntime as ort

    from pipeline.embed_onnx import padded_batch

    model = onnx.load(str(fp32_file))
    wanted = sorted({model.graph.node[k].input[0] for k in _weighted(model)})
    present = {o.name for o in model.graph.output}
    for name in wanted:
        if name not in present:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    feed, mask = padded_batch(token_ids, [i.name for i in session.get_inputs()])
    outputs = session.run(None, feed)
    real = mask.astype(bool)
    return {name: np.abs(out[real]).max(axis=0) for name, out in zip(names, outputs) if name in wanted}


def smooth(fp32_file: Path, out: Path, token_ids: Sequence[Sequence[int]], alpha: float) -> Path:
    """Write a copy of ``fp32_file`` with each weighted op's input divided by ``s`` and its weights
    multiplied by ``s`` (one ``Mul`` per op). Same function in fp32; easier to quantise."""
    import onnx
    from onnx import numpy_helper

    check_alpha(alpha)
    ranges = activation_ranges(fp32_file, token_ids)
    model = onnx.load(str(fp32_file))
    initializers = {i.name: i for i in model.graph.initializer}
    targets = set(_weighted(model))
    nodes = []
    for k, node in enumerate(model.graph.node):
        if k in targets:
            weight = numpy_helper.to_array(initializers[node.input[1]])
            x_max = np.maximum(ranges[node.input[0]], 1e-5)
            w_max = np.maximum(np.abs(weight).max(axis=1), 1e-5)
            s = (x_max**alpha / w_max ** (1.0 - alpha)).astype(np.float32)
            initializers[node.input[1]].CopyFrom(numpy_helper.from_array(weight * s[:, None], node.input[1]))
            inverse, smoothed = f"{node.name}_smooth_inverse", f"{node.name}_smoothed_input"
            model.graph.initializer.append(numpy_helper.from_array(1.0 / s, inverse))
            nodes.append(onnx.helper.make_node("Mul", [node.input[0], inverse], [smoothed], name=f"{node.name}_smooth"))
            node.input[0] = smoothed
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, str(out))
    return out


def quantize(fp32_file: Path, out: Path) -> Path:
    """Dynamic int8 quantisation of the matrix products and fused attention, one scale per channel.

    Activations are quantised on the fly, so no calibration data is needed here. Per-channel weight
    scales matter: with one scale per tensor the vectors drifted to cosine 0.82 from fp32 on real
    comments, per channel they stay at 0.99 on average (docs/benchmarks.md).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(str(fp32_file), str(out), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=list(WEIGHTED_OPS),
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return out


def int8_export(fp32_file: Path, out: Path, token_ids: Sequence[Sequence[int]] | None, alpha: float | None) -> Path:
    """Smooth (unless ``alpha`` is None) and quantise ``fp32_file`` into ``out``, written under a temporary
    name and renamed into place so a concurrent process never reads half a file."""
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    smoothed = out.with_name(f".{out.name}.{os.getpid()}.smoothed.tmp")
    try:
        source = fp32_file if alpha is None else smooth(fp32_file, smoothed, token_ids or [], alpha)
        quantize(source, tmp)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
        smoothed.unlink(missing_ok=True)
    return out
