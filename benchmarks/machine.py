"""What every benchmark table records about the machine: CPU model, its vector and matrix extensions, the thread count
and the load average, and interleaved timing of several variants (medians of pairs, so that load hits all alike)."""

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch


def cpu_description() -> str:
    """E.g. `"AMD EPYC (family 23 model 49), 2 CPUs, AVX2, no AVX-512, no AMX"` (Linux), else the platform's name."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or "unknown CPU"
    flags = set(fields.get("flags", "").split())
    extensions = [
        "AVX2" if "avx2" in flags else "no AVX2",
        "AVX-512" if "avx512f" in flags else "no AVX-512",
        "AVX512-BF16" if "avx512_bf16" in flags else "no AVX512-BF16",
        "AMX" if "amx_tile" in flags else "no AMX",
    ]
    model = f"{fields.get('model name', 'unknown')} (family {fields.get('cpu family')} model {fields.get('model')})"
    return f"{model}, {os.cpu_count()} CPUs, {', '.join(extensions)}"


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def resident_mib(field: str = "VmRSS") -> float | None:
    """A memory figure of this process from /proc/self/status (`VmRSS`: now, `VmHWM`: its peak), in MiB; None where
    there is no /proc."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def reset_peak_resident() -> bool:
    """Resets this process's `VmHWM` to its current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return resident_mib("VmHWM") is not None


def interleaved(runs: dict, rounds: int, setup=None) -> dict[str, list[float]]:
    """Seconds per call of each `runs[name]()`, every round running each once (the order reversed every other round);
    `setup(name)` runs untimed before each call. One untimed warm-up call each first."""
    names = list(runs)
    for name in names:
        if setup:
            setup(name)
        runs[name]()
    times = {name: [] for name in names}
    for round_index in range(rounds):
        for name in names if round_index % 2 == 0 else names[::-1]:
            if setup:
                setup(name)
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
    return times


def median_ratio(numerators: list[float], denominators: list[float]) -> float:
    """The median of the per-round ratios (pairs timed in the same round)."""
    return statistics.median(a / b for a, b in zip(numerators, denominators))


def header(dtype: str = "float32") -> str:
    return f"{cpu_description()}; torch {torch.__version__}; {dtype}; load average {load_average()}"


def write_results(out: str, rows: list[dict], **extra) -> None:
    """Write a benchmark's rows to `out` as JSON, with the CPU, torch version, dtype and command that produced them."""
    payload = {"cpu": cpu_description(), "torch": torch.__version__, "dtype": "float32", "command": sys.argv}
    payload.update(extra, rows=rows)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {out}")
