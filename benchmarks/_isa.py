"""The instruction set scripts/nbval.sh pins for NBVAL_ISA=pinned, for the sweeps that run a seed under it."""

from pathlib import Path


def pinned_isa_env():
    """The environment scripts/nbval.sh sets for NBVAL_ISA=pinned (an instruction set below this CPU's best)."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if " avx512f" in cpuinfo:
        return {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
    return {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "AVX", "MKL_ENABLE_INSTRUCTIONS": "AVX"}
