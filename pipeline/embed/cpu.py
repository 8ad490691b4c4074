"""What this CPU's integer kernels can do: which int8 recipe stays faithful depends on it.

Why: ONNX Runtime's int8 matrix products multiply unsigned 8-bit activations by signed 8-bit weights.
With VNNI (AVX512-VNNI, AVX-VNNI) or AMX the products are summed in 32 bits, exactly. Without them (AVX2,
or AVX-512 without VNNI) the kernel uses ``vpmaddubsw``, which adds pairs of products in *saturating*
16 bits: a wide activation times a large weight clips, and the vectors drift from fp32 (measured on an
AMD EPYC without VNNI: mean cosine 0.987 to fp32 instead of 0.996). Unsigned 8-bit weights take
another kernel there (both operands widened to 16 bits, then ``vpmaddwd``), which does not saturate.
So the weight type is chosen per CPU (:func:`int8_weights_for`), and the flags are recorded in every
run manifest and benchmark result.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from functools import cache
from pathlib import Path

#: Flags that say an int8 dot product is summed without saturation.
EXACT_INT8_DOT = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp")
#: Flags recorded with each run and benchmark result (those of them this CPU has).
REPORTED = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile",
            "amx_int8", "amx_bf16", "asimd", "asimddp")
#: numpy's names for the flags it knows, for systems without /proc/cpuinfo.
_NUMPY_NAMES = {"AVX2": "avx2", "FMA3": "fma", "AVX512F": "avx512f", "AVX512BW": "avx512bw",
                "AVX512VNNI": "avx512_vnni", "AVX512BF16": "avx512_bf16", "ASIMD": "asimd", "ASIMDDP": "asimddp"}


@dataclass(frozen=True)
class CpuFeatures:
    """The CPU's model name and the :data:`REPORTED` flags it has."""

    model: str
    flags: tuple[str, ...]

    @property
    def exact_int8_dot(self) -> bool:
        """True when int8 products are summed in 32 bits (VNNI, AMX, Arm's dot product)."""
        return any(f in self.flags for f in EXACT_INT8_DOT)

    @property
    def widest(self) -> str:
        """The widest integer SIMD flag it has, from AMX down to plain AVX2 or Arm's ASIMD."""
        return next((f for f in ("amx_int8", "avx512_vnni", "avx_vnni", "avx512bw", "avx2", "asimddp", "asimd")
                     if f in self.flags), "no SIMD flag known")

    @property
    def summary(self) -> str:
        """A few words for messages: the model and what its int8 kernels do."""
        dot = "exact int8 dot products" if self.exact_int8_dot else "no VNNI: int8 products saturate"
        return f"{self.model} ({self.widest}; {dot})"

    def as_dict(self) -> dict:
        return {"model": self.model, "flags": list(self.flags), "exact_int8_dot": self.exact_int8_dot}


def _proc_cpuinfo() -> tuple[str, set[str]] | None:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return (model, flags) if flags else None


def _numpy_flags() -> tuple[set[str], set[str]]:
    """The flags numpy's own CPUID checks found, and every flag name those checks cover."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_features__ as features
    known = {ours for theirs, ours in _NUMPY_NAMES.items() if theirs in features}
    return {ours for theirs, ours in _NUMPY_NAMES.items() if features.get(theirs)}, known


@cache
def detect() -> CpuFeatures:
    """This machine's CPU as this process sees it (:func:`combine` of /proc/cpuinfo and numpy's CPUID checks)."""
    found = _proc_cpuinfo()
    return combine(found[0] if found else "", found[1] if found else None, *_numpy_flags())


def combine(model: str, listed: set[str] | None, seen: set[str], known: set[str]) -> CpuFeatures:
    """The CPU from /proc/cpuinfo's ``model`` and flags (``listed``; None where there is none) and the flags
    CPUID answered (``seen`` of the ``known`` ones numpy checks), which ONNX Runtime's kernels dispatch on
    too. For a flag both know, CPUID wins; a flag only /proc/cpuinfo lists (AVX-VNNI, AMX) counts only where
    the two agree on every flag both know: where they differ, /proc/cpuinfo describes the host of an emulator
    that hides some of its instructions (``qemu-x86_64 -cpu Haswell`` on a CPU with AVX-VNNI)."""
    listed = set(listed or ())
    agree = listed & known == seen & known
    flags = ((listed - known) if agree else set()) | seen
    name = model or platform.processor() or platform.machine() or "unknown"
    return CpuFeatures(name, tuple(f for f in REPORTED if f in flags))


WEIGHT_TYPES = ("auto", "s8", "u8")


def int8_weights_for(cpu: CpuFeatures, configured: str = "auto") -> str:
    """``s8`` or ``u8``: the configured weight type, or for ``auto`` the one that does not saturate here
    (signed with exact int8 dot products, the faster kernel; unsigned without them)."""
    if configured not in WEIGHT_TYPES:
        raise ValueError(f"unknown embed.onnx.int8_weights '{configured}'; use one of {', '.join(WEIGHT_TYPES)}")
    if configured != "auto":
        return configured
    return "s8" if cpu.exact_int8_dot else "u8"
