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

What smoothing leaves is mostly in one product per layer, the feed-forward block's down-projection,
whose input is the activation function's output: :class:`Int8Recipe` can keep the first ``fp32_layers``
of them fp32 (all six of all-MiniLM-L6-v2's: mean cosine 0.9951 -> 0.9990 on FFT comments at 73% of
all-int8's speed).

Which kernel runs depends on the CPU (:mod:`pipeline.embed.cpu`): signed weights where int8 dot products
are exact (VNNI, AMX), unsigned weights where signed ones would saturate. Whatever the recipe, an int8
export is checked against fp32 on this machine before first use (:func:`faithfulness`, on sentences
shipped for the purpose, ``check_sentences.txt``, not those used for smoothing) and refused below
``embed.onnx.int8_min_cosine``: the user is told why and what to use instead.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from pipeline.config import OnnxSettings
from pipeline.embed.cpu import CpuFeatures, detect, int8_weights_for
from pipeline.embed.tokens import padded_batch

CALIBRATION = Path(__file__).with_name("calibration.txt")
CHECK = Path(__file__).with_name("check_sentences.txt")
#: Ops whose constant second input (the weights, ``[in, out]``) is smoothed and quantised.
WEIGHTED_OPS = ("MatMul", "Attention")


def check_alpha(alpha: float | None) -> None:
    """Refuse a smoothing alpha outside (0, 1]; None means no smoothing."""
    if alpha is not None and not 0.0 < float(alpha) <= 1.0:
        raise ValueError(f"embed.onnx.smooth must lie in (0, 1] or be null, not {alpha}")


@dataclass(frozen=True)
class Int8Recipe:
    """How an int8 export is made. Each recipe gives other vectors, so its :attr:`name` goes into the
    export's file name and the vectors' model id.

    ``smooth``: SmoothQuant's alpha (None: no smoothing). ``fp32_layers``: the down-projection of the
    first that many feed-forward blocks stays fp32 (:func:`down_projections`): its input, the
    activation function's output, has the widest channels of the model, and an error made in an early
    layer passes through every later one.
    """

    smooth: float | None = None
    fp32_layers: int = 0
    weights: str = "s8"

    def __post_init__(self) -> None:
        check_alpha(self.smooth)
        if int(self.fp32_layers) < 0:
            raise ValueError(f"embed.onnx.fp32_layers must be 0 or more, not {self.fp32_layers}")
        if self.weights not in ("s8", "u8"):
            raise ValueError(f"int8 weights must be s8 or u8, not {self.weights}")

    @classmethod
    def from_config(cls, onnx_cfg: OnnxSettings | Mapping, cpu: CpuFeatures | None = None) -> "Int8Recipe":
        """The recipe of ``embed.onnx`` on ``cpu`` (default: this machine's); ``int8_weights: auto`` picks
        the weight type that does not saturate there."""
        onnx_cfg = OnnxSettings.of(onnx_cfg)
        return cls(onnx_cfg.smooth, onnx_cfg.fp32_layers, int8_weights_for(cpu or detect(), onnx_cfg.int8_weights))

    @property
    def name(self) -> str:
        """``int8[-u8][-smooth<alpha>][-fp32ff<n>]``; signed weights keep the names results were made under."""
        name = "int8" if self.weights == "s8" else "int8-u8"
        name = name if self.smooth is None else f"{name}-smooth{float(self.smooth):g}"
        return f"{name}-fp32ff{self.fp32_layers}" if self.fp32_layers else name


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def calibration_texts() -> list[str]:
    """Sentences whose activation ranges set the smoothing scales."""
    return _lines(CALIBRATION)


def check_texts() -> list[str]:
    """Other sentences of the same kinds, on which an int8 export is compared with fp32 before use."""
    return _lines(CHECK)


def _weighted(model) -> list[int]:
    """Positions of the weighted ops in the graph's node list."""
    weights = {i.name for i in model.graph.initializer}
    return [k for k, n in enumerate(model.graph.node)
            if n.op_type in WEIGHTED_OPS and len(n.input) > 1 and n.input[1] in weights]


def down_projections(model) -> list[str]:
    """Names of the matrix products whose weights ``[in, out]`` narrow the width (``in > out``), in graph
    order: the second product of each feed-forward block, one per layer in a BERT-like encoder."""
    shapes = {i.name: tuple(i.dims) for i in model.graph.initializer}
    out = []
    for k in _weighted(model):
        node = model.graph.node[k]
        shape = shapes[node.input[1]]
        if node.op_type == "MatMul" and len(shape) == 2 and shape[0] > shape[1]:
            out.append(node.name)
    return out


def activation_ranges(fp32_file: Path, token_ids: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
    """Largest absolute value of every input channel of each weighted op, over real (unpadded) tokens."""
    import onnx
    import onnxruntime as ort

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


def quantize(fp32_file: Path, out: Path, keep_fp32: Sequence[str] = (), weights: str = "s8") -> Path:
    """Dynamic int8 quantisation of the matrix products and fused attention (except the nodes named in
    ``keep_fp32``), one scale per channel; ``weights`` signed (s8) or unsigned (u8).

    Activations are quantised on the fly, so no calibration data is needed here. Per-channel weight
    scales matter: with one scale per tensor the vectors drifted to cosine 0.82 from fp32 on real
    comments, per channel they stay at 0.99 on average (docs/benchmarks.md).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # ORT advises its shape pre-processing; the measured recipe quantises the fused graph as it is
    advice = _DropMessage("Please consider to run pre-processing")
    logging.getLogger().addFilter(advice)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            weight_type = QuantType.QInt8 if weights == "s8" else QuantType.QUInt8
            quantize_dynamic(str(fp32_file), str(out), weight_type=weight_type, per_channel=True,
                             op_types_to_quantize=list(WEIGHTED_OPS), nodes_to_exclude=list(keep_fp32),
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        logging.getLogger().removeFilter(advice)
    return out


class _DropMessage(logging.Filter):
    """Drops log records that start with ``prefix`` (advice a user of Themesift cannot act on)."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def int8_export(fp32_file: Path, out: Path, token_ids: Sequence[Sequence[int]] | None, recipe: Int8Recipe) -> Path:
    """Smooth (unless ``recipe.smooth`` is None) and quantise ``fp32_file`` into ``out``, written under a
    temporary name and renamed into place so a concurrent process never reads half a file."""
    import onnx

    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    smoothed = out.with_name(f".{out.name}.{os.getpid()}.smoothed.tmp")
    try:
        keep = down_projections(onnx.load(str(fp32_file)))[: recipe.fp32_layers] if recipe.fp32_layers else []
        source = fp32_file if recipe.smooth is None else smooth(fp32_file, smoothed, token_ids or [], recipe.smooth)
        quantize(source, tmp, keep, recipe.weights)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
        smoothed.unlink(missing_ok=True)
    return out
