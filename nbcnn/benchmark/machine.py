"""The peak FP32 rate of this CPU, which the tables and the ladder compare against."""

from __future__ import annotations

import os
import platform


def cpu_peak() -> dict:
    """Peak FP32 of this CPU from /proc/cpuinfo: cores x GHz x FMA units x lanes x 2 flops.

    Assumes 2 FMA pipes per core (Intel since Haswell, AMD since Zen 2) and that every core
    the process may use is a physical core (on a VM they may be hyper-threads: then halve it).
    """
    flags, mhz, model = set(), None, platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, val = line.partition(":")
                key = key.strip()
                if key == "flags" and not flags:
                    flags = set(val.split())
                elif key == "cpu MHz" and mhz is None:
                    mhz = float(val)
                elif key == "model name":
                    model = val.strip()
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    if "avx512f" in flags:
        lanes, isa = 16, "AVX-512"
    elif "avx" in flags:
        lanes, isa = 8, "AVX2" if "avx2" in flags else "AVX"
    else:
        lanes, isa = 4, "SSE"
    fma = "fma" in flags
    per_cycle = 2 * lanes * (2 if fma else 1)  # 2 pipes x lanes x (mul+add in one FMA, or one op)
    ghz = (mhz or 2000.0) / 1000
    gflops = cores * ghz * per_cycle
    return {
        "model": model, "cores": cores, "ghz": ghz, "isa": isa, "fma": fma, "flops_per_cycle_per_core": per_cycle,
        "peak_gflops": gflops,
        "assumption": (f"{cores} cores x {ghz:.2f} GHz x 2 {'FMA' if fma else 'FP'} pipes x {lanes} fp32 lanes ({isa})"
                       f"{' x 2 (FMA)' if fma else ''} = {gflops:.0f} GFLOP/s"
                       f"{'' if mhz else ' (no cpu MHz in /proc/cpuinfo: 2 GHz assumed)'}; "
                       "cores taken as physical, clock as reported (turbo not counted)"),
    }
