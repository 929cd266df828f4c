"""What this CPU can do for reduced precisions: int8 dot-product instructions (VNNI) and BF16.

int8 inference is only fast with int8 dot-product instructions: x86 AVX512-VNNI, AVX-VNNI or
AMX-INT8, Arm's dot-product extension (``asimddp``). Without them ONNX Runtime's and OpenVINO's
int8 kernels fall back to widening multiplies and can be slower than fp32, so the int8 paths
refuse such a CPU unless told otherwise (``allow_fallback`` / ``allow_slow_int8``).

The flags come from ``/proc/cpuinfo`` (Linux). Elsewhere :func:`cpu_flags` returns None and the
checks cannot tell (they then let the int8 paths run, and say so in :func:`int8_dot_support`).
"""

from __future__ import annotations

from pathlib import Path

INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp")
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str] | None:
    """The CPU's feature flags (x86 ``flags`` / Arm ``Features`` of the first CPU), or None where
    they cannot be read."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return set(value.split())
    return None


def int8_dot_support(flags: set[str] | None = None) -> tuple[bool | None, str]:
    """(True / False / None when unknown, a sentence for errors and reports)."""
    flags = cpu_flags() if flags is None else flags
    if flags is None:
        return None, "cannot read this CPU's flags (no /proc/cpuinfo): int8 dot-product support unknown"
    have = [f for f in INT8_DOT_FLAGS if f in flags]
    if have:
        return True, f"int8 dot-product instructions: {', '.join(have)}"
    return False, ("this CPU has no int8 dot-product instructions (none of AVX512-VNNI, AVX-VNNI, AMX-INT8, "
                   "Arm dotprod): int8 kernels run without them and can be slower than fp32")
