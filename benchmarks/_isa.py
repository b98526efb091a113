"""The instruction set scripts/nbval.sh pins for NBVAL_ISA=pinned (one home for both it and the sweeps
that run a seed under it): `python3 benchmarks/_isa.py` prints it as shell assignments for nbval.sh."""

import shlex
from pathlib import Path


def pinned_isa():
    """(environment, why): the kernels' instruction set below this CPU's best, and the reason in words."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if "avx512f" in cpuinfo.split():
        return ({"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
                "this CPU has AVX-512")
    return ({"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "AVX", "MKL_ENABLE_INSTRUCTIONS": "AVX"},
            "this CPU has no AVX-512")


def pinned_isa_env():
    """The environment scripts/nbval.sh sets for NBVAL_ISA=pinned (an instruction set below this CPU's best)."""
    return pinned_isa()[0]


if __name__ == "__main__":
    env, why = pinned_isa()
    print(f"export {' '.join(f'{k}={shlex.quote(v)}' for k, v in env.items())}; why={shlex.quote(why)}")
