"""Which precision a training run uses: f32, or bf16/fp16 autocast where the hardware runs it natively.

`choose_precision` is pure (the CPU flags and the GPU's bf16 support are inputs), so tests can
describe any machine; `detect_precision` reads the real ones. `auto` takes bf16 autocast on a CPU
with native bf16 instructions (`amx_bf16` or `avx512_bf16` in /proc/cpuinfo), bf16 (else fp16) on
CUDA, and f32 elsewhere. Autocast keeps the weights in f32, so the saved model is f32 either way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipe_embed.pipeline.core.errors import ConfigError

Requested = Literal["auto", "f32", "bf16", "fp16"]  # what a config asks for
Precision = Literal["f32", "bf16", "fp16"]  # what a run trains in (auto resolved)
PRECISIONS = ("auto", "f32", "bf16", "fp16")
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # native bf16 on x86, best first
# The old `dtype` spellings (flag, seed config.json) and what each means now.
DTYPE_NAMES = {"auto": "auto", "float32": "f32", "fp32": "f32", "f32": "f32", "float16": "fp16", "fp16": "fp16",
               "half": "fp16", "bfloat16": "bf16", "bf16": "bf16"}


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run trains in, and why (for the one line the run prints)."""

    precision: Precision
    reason: str

    @property
    def bf16(self) -> bool:
        return self.precision == "bf16"

    @property
    def fp16(self) -> bool:
        return self.precision == "fp16"

    def line(self) -> str:
        """`precision: bf16 autocast (CPU has amx_bf16)`."""
        what = "f32" if self.precision == "f32" else f"{self.precision} autocast"
        return f"precision: {what} ({self.reason})"


def choose_precision(requested: Requested, device: str, *, cpu_flags: Iterable[str] = (),
                     cuda_bf16: bool = False) -> PrecisionChoice:
    """The precision for `requested` (auto, f32, bf16, fp16) on `device`; impossible pairs are config errors."""
    flags = set(cpu_flags)
    native = next((f for f in CPU_BF16_FLAGS if f in flags), None)
    if requested not in PRECISIONS:
        raise ConfigError(f"field 'precision': {requested!r} is not one of {', '.join(PRECISIONS)}")
    if device.startswith("cuda"):
        if requested == "auto":
            return (PrecisionChoice("bf16", "GPU supports bf16") if cuda_bf16
                    else PrecisionChoice("fp16", "GPU has no bf16"))
        if requested == "bf16" and not cuda_bf16:
            raise ConfigError("field 'precision': this GPU has no bf16 support", hint="use fp16 or auto")
        return PrecisionChoice(requested, f"--precision {requested}")
    if requested == "fp16":
        raise ConfigError(f"field 'precision': fp16 autocast needs a CUDA GPU (device is {device})",
                          hint="use auto, f32 or bf16")
    if device == "mps":
        if requested == "bf16":
            raise ConfigError("field 'precision': bf16 autocast is not supported on mps", hint="use auto or f32")
        return PrecisionChoice("f32", "--precision f32" if requested == "f32" else "no autocast on mps")
    if requested == "auto":
        if native:
            return PrecisionChoice("bf16", f"CPU has {native}")
        return PrecisionChoice("f32", f"CPU has no native bf16: neither {' nor '.join(CPU_BF16_FLAGS)}")
    if requested == "bf16" and not native:
        return PrecisionChoice("bf16", "--precision bf16; this CPU has no native bf16, so it is emulated and slow")
    return PrecisionChoice(requested, f"--precision {requested}")


def read_cpu_flags(path: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (Linux); empty where there is none."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def detect_precision(requested: Requested, device: str) -> PrecisionChoice:
    """`choose_precision` with this machine's CPU flags and GPU."""
    cuda_bf16 = False
    if device.startswith("cuda"):
        import torch

        cuda_bf16 = bool(torch.cuda.is_bf16_supported())
    flags = read_cpu_flags() if device == "cpu" else frozenset()
    return choose_precision(requested, device, cpu_flags=flags, cuda_bf16=cuda_bf16)


def precision_of_dtype(value: str, field: str = "dtype") -> str:
    """The precision an old `dtype` value (float32, bfloat16, torch.float16 …) means."""
    text = str(value).lower().removeprefix("torch.")
    if text not in DTYPE_NAMES:
        raise ConfigError(f"field '{field}': {value!r} is not one of auto, float32, float16, bfloat16")
    return DTYPE_NAMES[text]


__all__ = ["CPU_BF16_FLAGS", "PRECISIONS", "Precision", "PrecisionChoice", "Requested", "choose_precision",
           "detect_precision", "precision_of_dtype", "read_cpu_flags"]
