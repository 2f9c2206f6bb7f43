"""The workload file format (netsim-workload, version 1), its checked loader and writers.

    format = "netsim-workload"     # what the file is
    version = 1                    # this format; a later netsim reads it as written
    name = "resnet-50"
    source = "torchvision.models.resnet50"   # optional: where the layers come from
    dtype = "float32"              # the gradients' dtype: float32, float16 or bfloat16
    batch = 256                    # samples per GPU per micro-step (what the times are for)

    [compute]                      # optional: turns FLOPs into times
    device = "hopper"              # a GPU generation (volta, ampere, hopper, blackwell) or
    peak_tflops = 989.4            # ... its peak, dense, at the precision below
    precision = "fp16"             # fp16 (or bf16), tf32, fp32: which peak of the device
    efficiency = 0.4               # the share of that peak the layers achieve

    [[layers]]                     # in order of registration (forward order)
    name = "conv1"
    params = [9408]                # its parameter tensors (DDP's parameters), elements
    forward_flops = 2.36e8         # per sample; backward_flops defaults to 2 x forward
    # or forward_ms / backward_ms: per micro-step at `batch`

A layer gives its compute as FLOPs or as times (not both); FLOPs need a device, from
[compute] or the topology's `gpu`. Every field is checked as the file is read, and a bad
one is one line naming it (`layers[3].params ...`).
"""

from __future__ import annotations

import difflib
import json
import math
import numbers
import os
import tomllib

from .workload import (
    ITEMSIZE,
    MAX_LAYERS,
    MAX_PARAMS,
    PEAK_TFLOPS,
    PRECISIONS,
    Layer,
    Workload,
    WorkloadError,
)

FORMAT, VERSION = "netsim-workload", 1


# ---------------------------------------------------------------- checking


def _show(value) -> str:
    text = repr(value).replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def _bad(path: str, problem: str, value) -> WorkloadError:
    return WorkloadError(f"{path} {problem}, got {_show(value)}")


def _unknown(path: str, key, known) -> WorkloadError:
    near = difflib.get_close_matches(str(key), list(known), n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else f" (known: {', '.join(sorted(known))})"
    return WorkloadError(f"{path}{_show(key)} is not a workload key{hint}")


def _number(path, value, low=0.0, low_open=True) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or (value <= low if low_open else value < low):
        raise _bad(path, f"must be a finite number {'>' if low_open else '>='} {low:g}", value)
    return float(value)


def _count(path, value, low=1, high=MAX_PARAMS) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(path, f"must be an integer in {low:,}..{high:,}", value)
    return value


def _text(path, value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _bad(path, "must be a non-empty string", value)
    return value


def _tensors(path, value) -> tuple[int, ...]:
    """An integer (one tensor; 0: none) or a list of the tensors' element counts."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (_count(path, value, 0),) if value else ()
    if not isinstance(value, list):
        raise _bad(path, "must be an integer or a list of positive integers", value)
    return tuple(_count(f"{path}[{i}]", v, 1) for i, v in enumerate(value))


_LAYER_KEYS = ("name", "params", "forward_flops", "backward_flops", "forward_ms", "backward_ms")
_COMPUTE_KEYS = ("device", "peak_tflops", "precision", "efficiency")
_TOP_KEYS = ("format", "version", "name", "source", "dtype", "batch", "compute", "layers")


def _layer(i: int, data) -> Layer:
    path = f"layers[{i}]"
    if not isinstance(data, dict):
        raise _bad(path, "must be a table", data)
    for key in data:
        if key not in _LAYER_KEYS:
            raise _unknown(f"{path}.", key, _LAYER_KEYS)
    for key in ("name", "params"):
        if key not in data:
            raise WorkloadError(f"{path}.{key} is missing")
    flops = "forward_flops" in data or "backward_flops" in data
    times = "forward_ms" in data or "backward_ms" in data
    if flops and times:
        raise WorkloadError(f"{path} gives both FLOPs and times; give one of them")
    if not flops and not times:
        raise WorkloadError(f"{path}.forward_flops or {path}.forward_ms is missing")
    if flops and "forward_flops" not in data:
        raise WorkloadError(f"{path}.forward_flops is missing (needed by backward_flops)")
    name, tensors = _text(f"{path}.name", data["name"]), _tensors(f"{path}.params", data["params"])
    if flops:
        fwd = _number(f"{path}.forward_flops", data["forward_flops"], low_open=False)
        bwd = data.get("backward_flops")
        bwd = None if bwd is None else _number(f"{path}.backward_flops", bwd, low_open=False)
        return Layer(name, tensors, forward_flops=fwd, backward_flops=bwd)
    for key in ("forward_ms", "backward_ms"):
        if key not in data:
            raise WorkloadError(f"{path}.{key} is missing (a layer given by times needs both)")
    fwd = _number(f"{path}.forward_ms", data["forward_ms"], low_open=False) / 1e3
    bwd = _number(f"{path}.backward_ms", data["backward_ms"], low_open=False) / 1e3
    return Layer(name, tensors, forward_s=fwd, backward_s=bwd)


def _compute(data) -> dict:
    if not isinstance(data, dict):
        raise _bad("compute", "must be a table", data)
    for key in data:
        if key not in _COMPUTE_KEYS:
            raise _unknown("compute.", key, _COMPUTE_KEYS)
    out = {}
    if "device" in data:
        if data["device"] not in PEAK_TFLOPS:
            raise _bad("compute.device", f"must be one of {', '.join(PEAK_TFLOPS)}", data["device"])
        out["device"] = data["device"]
    if "peak_tflops" in data:
        out["peak_tflops"] = _number("compute.peak_tflops", data["peak_tflops"])
    if "precision" in data:
        if data["precision"] not in PRECISIONS:
            raise _bad(
                "compute.precision", f"must be one of {', '.join(PRECISIONS)}", data["precision"]
            )
        out["precision"] = data["precision"]
    if "efficiency" in data:
        e = _number("compute.efficiency", data["efficiency"])
        if e > 1:
            raise _bad("compute.efficiency", "must be in (0, 1]", data["efficiency"])
        out["efficiency"] = e
    return out


def check(data) -> Workload:
    """A Workload from a parsed file (a dict), every field checked."""
    if not isinstance(data, dict):
        raise _bad("the workload", "must be a table", data)
    for key in data:
        if key not in _TOP_KEYS:
            raise _unknown("", key, _TOP_KEYS)
    if data.get("format") != FORMAT:
        raise _bad("format", f"must be {FORMAT!r} (is this a workload file?)", data.get("format"))
    if "version" not in data:
        raise WorkloadError("version is missing")
    if data["version"] != VERSION or isinstance(data["version"], bool):
        raise _bad(
            "version", f"must be {VERSION} (this netsim reads version {VERSION})", data["version"]
        )
    for key in ("name", "layers"):
        if key not in data:
            raise WorkloadError(f"{key} is missing")
    layers = data["layers"]
    if not isinstance(layers, list) or not layers:
        raise _bad("layers", "must be a non-empty list of tables", layers)
    if len(layers) > MAX_LAYERS:
        raise _bad("layers", f"must hold at most {MAX_LAYERS:,} layers", len(layers))
    dtype = data.get("dtype", "float32")
    if dtype not in ITEMSIZE:
        raise _bad("dtype", f"must be one of {', '.join(ITEMSIZE)}", dtype)
    out = Workload(
        name=_text("name", data["name"]),
        layers=tuple(_layer(i, layer) for i, layer in enumerate(layers)),
        dtype=dtype,
        batch=_count("batch", data.get("batch", 1), 1, 1 << 30),
        source=_text("source", data["source"]) if "source" in data else "",
        compute=_compute(data.get("compute", {})),
    )
    if out.params > MAX_PARAMS:
        raise _bad("layers", f"must hold at most {MAX_PARAMS:,} parameters in all", out.params)
    return out


# ---------------------------------------------------------------- files


def to_dict(w: Workload) -> dict:
    out = {"format": FORMAT, "version": VERSION, "name": w.name}
    if w.source:
        out["source"] = w.source
    out |= {"dtype": w.dtype, "batch": w.batch}
    if w.compute:
        out["compute"] = dict(w.compute)
    layers = []
    for layer in w.layers:
        one = {"name": layer.name, "params": list(layer.tensors)}
        if layer.forward_s is not None:
            one |= {"forward_ms": layer.forward_s * 1e3, "backward_ms": layer.backward_s * 1e3}
        else:
            one["forward_flops"] = layer.forward_flops
            if layer.backward_flops is not None:
                one["backward_flops"] = layer.backward_flops
        layers.append(one)
    out["layers"] = layers
    return out


def _toml_value(value) -> str:
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string is JSON's, escapes included
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def to_toml(w: Workload) -> str:
    d = to_dict(w)
    lines = [f"{k} = {_toml_value(v)}" for k, v in d.items() if k not in ("compute", "layers")]
    if "compute" in d:
        lines += ["", "[compute]"] + [f"{k} = {_toml_value(v)}" for k, v in d["compute"].items()]
    for layer in d["layers"]:
        lines += ["", "[[layers]]"] + [f"{k} = {_toml_value(v)}" for k, v in layer.items()]
    return "\n".join(lines) + "\n"


def to_json(w: Workload) -> str:
    return json.dumps(to_dict(w), indent=1)


def loads(text: str, kind: str = "toml") -> Workload:
    try:
        data = json.loads(text) if kind == "json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise WorkloadError(f"not a {kind.upper()} workload: {exc}") from None
    return check(data)


def load(path: str) -> Workload:
    """A workload file, TOML or JSON (by its first character), checked."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise WorkloadError(f"cannot read workload {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise WorkloadError(f"workload {path} is not text") from None
    kind = "json" if text.lstrip().startswith(("{", "[")) else "toml"
    try:
        return loads(text, kind)
    except WorkloadError as exc:
        raise WorkloadError(f"{os.path.basename(path)}: {exc}") from None
