"""The Workload: a model's layers, in order of registration, each with its parameter tensors
(DDP's parameters) and its forward and backward compute, as FLOPs per sample or as times
for one micro-step; and the compute model that turns FLOPs into times: the device's peak at
a precision (PEAK_TFLOPS, from the datasheets) times an achievable share. Its file format
and checked loader are netsim.workload.fileformat.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from netsim.errors import InputError

ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2}
PRECISIONS = ("fp16", "bf16", "tf32", "fp32")
# Peak dense tensor throughput in TFLOPS by generation (the SXM part of each: V100, A100,
# H100, B200) and precision, from NVIDIA's datasheets: V100 125 (fp16) and 15.7 (fp32, no
# TF32); A100 312 / 156 (TF32) / 19.5; H100 SXM 989.4 / 494.7 / 66.9; HGX B200 (8 GPUs)
# 18 PF fp16 and TF32 sparse, 600 TF fp32, per GPU and dense 2250 / 1125 / 75; AMD
# Instinct MI300X (cdna3) 1307.4 / 653.7 / 163.4, MI355X (cdna4) 2516.6 fp16, 157.3 fp32
# (no TF32: its fp32 figure).
PEAK_TFLOPS = {
    "volta": {"fp16": 125.0, "bf16": 125.0, "tf32": 15.7, "fp32": 15.7},
    "ampere": {"fp16": 312.0, "bf16": 312.0, "tf32": 156.0, "fp32": 19.5},
    "hopper": {"fp16": 989.4, "bf16": 989.4, "tf32": 494.7, "fp32": 66.9},
    "blackwell": {"fp16": 2250.0, "bf16": 2250.0, "tf32": 1125.0, "fp32": 75.0},
    "cdna3": {"fp16": 1307.4, "bf16": 1307.4, "tf32": 653.7, "fp32": 163.4},
    "cdna4": {"fp16": 2516.6, "bf16": 2516.6, "tf32": 157.3, "fp32": 157.3},
}
DEFAULT_EFFICIENCY = 0.4  # of peak: what large dense layers reach in training, roughly
BACKWARD_PER_FORWARD = 2.0  # input gradient + weight gradient: two matmuls per forward one
MAX_LAYERS = 1 << 20
MAX_PARAMS = 1 << 40


class WorkloadError(InputError):
    """A bad workload: one line naming the field at fault."""


@dataclass(frozen=True)
class Layer:
    name: str
    tensors: tuple[int, ...]  # elements of each parameter tensor, in registration order
    forward_flops: float | None = None  # per sample
    backward_flops: float | None = None
    forward_s: float | None = None  # per micro-step at the workload's batch
    backward_s: float | None = None

    @property
    def params(self) -> int:
        return sum(self.tensors)


@dataclass(frozen=True)
class Workload:
    name: str
    layers: tuple[Layer, ...]
    dtype: str = "float32"
    batch: int = 1
    source: str = ""
    compute: dict = field(default_factory=dict)  # [compute]: device, peak_tflops, ...

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def itemsize(self) -> int:
        return ITEMSIZE[self.dtype]

    @property
    def flops_per_sample(self) -> float | None:
        """Forward + backward FLOPs of one sample; None where a layer gives times."""
        if any(layer.forward_flops is None for layer in self.layers):
            return None
        return sum(layer.forward_flops + _backward_flops(layer) for layer in self.layers)

    def with_(self, **changes) -> Workload:
        return replace(self, **changes)

    def peak_flops(self, gpu: str | None = None) -> float | None:
        """Peak FLOP/s of the device: [compute]'s, else the topology's generation."""
        c = self.compute
        if "peak_tflops" in c:
            return c["peak_tflops"] * 1e12
        device = c.get("device", gpu)
        if device not in PEAK_TFLOPS:
            return None
        return PEAK_TFLOPS[device][c.get("precision", _precision(self.dtype))] * 1e12

    def times(self, gpu: str | None = None, efficiency: float | None = None, rate=None):
        """(forward_s, backward_s) per layer for one micro-step of `batch` samples: the
        layer's times, or its FLOPs x batch at efficiency x the device's peak (rate: the
        FLOP/s achieved, given)."""
        eff = efficiency or self.compute.get("efficiency", DEFAULT_EFFICIENCY)
        forward, backward = [], []
        for layer in self.layers:
            if layer.forward_s is not None:
                forward.append(layer.forward_s)
                backward.append(layer.backward_s)
                continue
            if rate is None:
                peak = self.peak_flops(gpu)
                if peak is None:
                    raise WorkloadError(
                        f"workload {self.name!r} gives FLOPs, which need a device: [compute] "
                        f"device or peak_tflops, or a topology with a gpu"
                    )
                rate = peak * eff
            forward.append(layer.forward_flops * self.batch / rate)
            backward.append(_backward_flops(layer) * self.batch / rate)
        return forward, backward


def _backward_flops(layer: Layer) -> float:
    if layer.backward_flops is not None:
        return layer.backward_flops
    return BACKWARD_PER_FORWARD * layer.forward_flops


def _precision(dtype: str) -> str:
    return "fp32" if dtype == "float32" else "fp16"
