"""Which floating-point dtype to run CLIP in: the fastest one that is safe on a given device.

`fastest_safe_dtype(device)` is bfloat16 where the hardware computes it natively (x86 CPUs with AVX512-BF16 or
AMX-BF16 and torch's AVX512 kernels, Arm CPUs with the BF16 extension, CUDA GPUs that support it), float16 on
CUDA GPUs without bfloat16 (the reference runs CLIP in fp16 on GPU), and float32 elsewhere: a CPU without native
bfloat16 emulates it and is slower than float32.

`resolve_dtype(name, device)` turns the `--dtype` choices into a `torch.dtype`: `"auto"` is the fastest safe
dtype for the device (not transformers' `dtype="auto"`, which means the checkpoint's own dtype), and
`"float32"`, `"bfloat16"`, `"float16"` (or `"fp32"`, `"bf16"`, `"fp16"`) name one. CPU features are read at run
time from `/proc/cpuinfo` and `torch.backends.cpu.get_cpu_capability()`, once per process.
"""

import functools
import platform
from pathlib import Path

import torch

from .model.choices import DTYPE_ALIASES, DTYPE_CHOICES

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

_X86_NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}
_ARM_NATIVE_BF16_FLAGS = {"bf16"}
_CPUINFO = Path("/proc/cpuinfo")


def resolve_dtype(name: str | torch.dtype | None, device: str | torch.device | None = None) -> torch.dtype | None:
    """The `torch.dtype` that `name` means on `device`.

    Args:
        name (`str`, `torch.dtype` or `None`):
            `"auto"`, one of `DTYPES` or `DTYPE_ALIASES`, a floating `torch.dtype`, or `None` (keep the checkpoint's
            dtype: returns `None`).
        device (`str` or `torch.device`, *optional*, defaults to the CPU):
            Where the model will run; only used by `"auto"`.

    Returns:
        `torch.dtype` or `None`.
    """
    if name is None:
        return None
    if not isinstance(name, (str, torch.dtype)):
        raise TypeError(f"dtype must be a string or a torch.dtype, got {type(name).__name__}.")
    if name == "auto":
        return fastest_safe_dtype(device)
    dtype = name if name in DTYPES.values() else DTYPES.get(DTYPE_ALIASES.get(name, name))
    if dtype is None:
        raise ValueError(f"Unknown dtype {name!r}; valid choices are {', '.join(DTYPE_CHOICES)}.")
    return dtype


def fastest_safe_dtype(device: str | torch.device | None = None) -> torch.dtype:
    """The fastest dtype whose matrix products `device` computes natively (see the module docstring).

    Args:
        device (`str` or `torch.device`, *optional*, defaults to the CPU):
            e.g. `"cpu"`, `"cuda"`, `"cuda:1"`, `"mps"`.

    Returns:
        `torch.bfloat16`, `torch.float16` or `torch.float32`.
    """
    device = torch.device("cpu" if device is None else device)
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_native_bfloat16() else torch.float32
    if device.type == "cuda":
        with torch.cuda.device(device):
            return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    return torch.float32


@functools.cache
def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 matrix products natively, as torch's CPU kernels can use them.

    x86: AVX512-BF16 or AMX-BF16 in `/proc/cpuinfo`, and torch reporting an AVX512 capability. Arm (aarch64):
    the BF16 extension in `/proc/cpuinfo`. Anything else, or no `/proc/cpuinfo`: `False`.
    """
    flags = cpu_flags()
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        capability = torch.backends.cpu.get_cpu_capability()
        return bool(flags & _X86_NATIVE_BF16_FLAGS) and capability.startswith("AVX512")
    if machine in ("aarch64", "arm64"):
        return bool(flags & _ARM_NATIVE_BF16_FLAGS)
    return False


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU feature flags of the first processor in `/proc/cpuinfo` (x86 `flags`, Arm `Features`).

    Args:
        cpuinfo (`str`, *optional*):
            The text of a `/proc/cpuinfo`; read from the system when not given (empty set when unreadable).
    """
    if cpuinfo is None:
        try:
            cpuinfo = _CPUINFO.read_text(errors="replace")
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()
