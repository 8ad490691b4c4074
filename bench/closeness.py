"""How near each int8 recipe's vectors stay to fp32 on this CPU (``python -m bench int8-closeness``).

Why a benchmark of its own: int8 rounding depends on the CPU's integer kernels (:mod:`pipeline.embed.cpu`),
so the same export gives other vectors on a CPU with VNNI and on one without. Run it on each CPU family,
or under ``qemu-x86_64 -cpu Haswell`` to imitate an AVX2 CPU without VNNI or AVX-512 (the real kernels
run; only the CPU is emulated, so its timings mean nothing and none are reported).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from bench.speed import _embedder, nhs_comment_segments


def int8_closeness(config: dict, step: int = 5, layers: tuple[int, ...] = (0, 6)) -> dict:
    """Mean and least cosine to fp32 of each recipe (signed and unsigned weights x ``layers``), on every
    ``step``-th NHS FFT comment segment and on the shipped check sentences, with this CPU's flags."""
    from pipeline.embed.cpu import detect, int8_weights_for
    from pipeline.embed.int8 import Int8Recipe, check_texts

    cpu = detect()
    onnx = config["embed"]["onnx"]
    texts = nhs_comment_segments(config)[::step]
    check = check_texts()
    fp32 = replace(_embedder(config, "onnx"), onnx_precision="fp32")
    reference = {"comments": fp32.encode(texts), "check": fp32.encode(check)}
    smooth = None if onnx["smooth"] is None else float(onnx["smooth"])
    auto = int8_weights_for(cpu, "auto")
    recipes = {}
    for weights in ("s8", "u8"):
        for n in layers:
            recipe = Int8Recipe(smooth, n, weights)
            embedder = replace(fp32, onnx_precision="int8", onnx_int8=recipe, onnx_int8_min_cosine=None)
            row: dict = {"weights": weights, "fp32_layers": n, "auto_here": weights == auto}
            for name, items in (("comments", texts), ("check", check)):
                cosine = (embedder.encode(items) * reference[name]).sum(axis=1)
                row[name] = {"mean": round(float(cosine.mean()), 5), "min": round(float(cosine.min()), 5),
                             "p05": round(float(np.quantile(cosine, 0.05)), 5)}
            row["passes_check"] = onnx["int8_min_cosine"] is None or row["check"]["mean"] >= onnx["int8_min_cosine"]
            recipes[recipe.name] = row
    return {
        "kind": "int8-closeness",
        "description": (f"cosine of int8 vectors to this CPU's ONNX fp32 vectors: every {step}th clusterable "
                        f"segment of the NHS FFT comments ({len(texts)}) and the {len(check)} shipped check "
                        f"sentences; refusal bar embed.onnx.int8_min_cosine = {onnx['int8_min_cosine']} on the "
                        "check sentences"),
        "cpu": {**cpu.as_dict(), "summary": cpu.summary, "auto_weights": auto},
        "recipes": recipes,
    }
