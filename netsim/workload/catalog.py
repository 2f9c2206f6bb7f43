"""The built-in workloads by name, and `resolve`: what `--workload W` may name.

Every built-in is generated from its architecture's definition (convnets, transformers),
never typed in; the tests hold their parameter counts to the published ones. Their compute
is FLOPs per sample, which a device turns into time (netsim.workload.workload.Workload.times).

A PyTorch model is named torch:MODULE:CALLABLE (torch_workload): MODULE a dotted module on
sys.path or a .py file, CALLABLE what in it builds the nn.Module when called with no
arguments. What the user's code raises as it is imported or called is one line naming it.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import math
import os
import sys

from . import convnets, importers, transformers
from .fileformat import load
from .workload import Workload, WorkloadError

BUILTINS = {
    "resnet-50": lambda seq: convnets.resnet(50),
    "resnet-101": lambda seq: convnets.resnet(101),
    "vgg-16": lambda seq: convnets.vgg16(),
    "inception-v3": lambda seq: convnets.inception_v3(),
    **{n: (lambda seq, n=n: transformers.bert(n, seq or 512)) for n in transformers.BERT},
    **{n: (lambda seq, n=n: transformers.gpt2(n, seq or 1024)) for n in transformers.GPT2},
    "transformer-big": lambda seq: transformers.transformer_big(seq or 32),
}
SEQUENCE_MODELS = (*transformers.BERT, *transformers.GPT2, "transformer-big")
MAX_SEQ_LEN = 1 << 20
TORCH = "torch:"
MAX_INPUT_ELEMENTS = 1 << 30  # a torch: model's example batch: 4 GiB of float32 zeros


def builtin(name: str, seq_len: int | None = None) -> Workload:
    if name not in BUILTINS:
        raise WorkloadError(f"no built-in workload {name!r}; choose one of {', '.join(BUILTINS)}")
    if seq_len is not None and name not in SEQUENCE_MODELS:
        raise WorkloadError(f"--seq-len is for sequence models, not {name}")
    return BUILTINS[name](seq_len)


def resolve(
    spec: str,
    seq_len: int | None = None,
    input_shape: tuple[int, ...] | None = None,
    batch: int | None = None,
    measure: bool = False,
) -> Workload:
    """A built-in's name, a workload file (TOML or JSON), an ASTRA-sim 1.0 or SimAI workload
    file (text: its data-parallel lines), a run directory of ours, or torch:MODULE:CALLABLE
    (torch_workload, which alone takes input_shape, batch and measure)."""
    if spec.startswith(TORCH):
        return torch_workload(spec, seq_len, input_shape, batch, measure)
    for given, flag in ((input_shape, "--input-shape"), (measure, "--measure")):
        if given:
            raise WorkloadError(f"{flag} is for a PyTorch model (--workload torch:MODULE:CALLABLE)")
    if spec in BUILTINS:
        return builtin(spec, seq_len)
    if seq_len is not None:
        raise WorkloadError("--seq-len is for the built-in sequence models and torch: models")
    if os.path.isdir(spec):
        return importers.from_run_dir(spec)
    if not os.path.exists(spec):
        raise WorkloadError(
            f"--workload {spec!r} is neither a built-in ({', '.join(BUILTINS)}) nor a file, "
            f"a run directory or torch:MODULE:CALLABLE"
        )
    if importers.is_astra(spec):
        return importers.from_astra(spec)
    return load(spec)


def torch_workload(
    spec: str,
    seq_len: int | None = None,
    input_shape: tuple[int, ...] | None = None,
    batch: int | None = None,
    measure: bool = False,
) -> Workload:
    """torch:MODULE:CALLABLE's model (importers.from_torch) with an example of `batch`
    samples (default 1): zeros of input_shape per sample (float32), or seq_len token ids
    (int64 zeros); without either, from_torch's 2 x weights per sample. measure: its forward
    and backward timed here, on the model's device."""
    where, _, name = spec[len(TORCH) :].rpartition(":")
    if not where or not name:
        raise WorkloadError(
            f"--workload {spec!r}: want torch:MODULE:CALLABLE, a dotted module or a .py file "
            "and what in it builds the model (e.g. torch:torchvision.models:resnet50)"
        )
    if seq_len is not None and input_shape is not None:
        raise WorkloadError("--input-shape (float32 zeros) or --seq-len (token ids), not both")
    shape = input_shape or ((seq_len,) if seq_len else None)
    batch = batch or 1
    if shape and batch * math.prod(shape) > MAX_INPUT_ELEMENTS:
        raise WorkloadError(
            f"the example input, {batch} x {','.join(map(str, shape))}, would hold "
            f"{batch * math.prod(shape):,} elements; at most {MAX_INPUT_ELEMENTS:,}"
        )
    if measure and shape is None:
        raise WorkloadError("--measure times an example's forward: give --input-shape or --seq-len")
    if is_python_file(where) and not os.path.isfile(where):
        raise WorkloadError(f"{spec}: no such file: {where}")
    torch = importers.import_torch()
    model = torch_model(where, name)
    example, how = None, "no example input: 2 x weights FLOPs per sample"
    if shape is not None:
        first = next(model.parameters(), None)  # none: from_torch says so
        device = first.device if first is not None else "cpu"
        dtype = torch.long if seq_len else torch.float32
        example = torch.zeros((batch, *shape), dtype=dtype, device=device)
        what = f"{batch} x {','.join(map(str, shape))} {'token ids' if seq_len else 'zeros'}"
        how = f"timed here ({device}) on {what}" if measure else f"FLOPs from a forward of {what}"
    workload = importers.from_torch(model, example, batch, measure)
    return workload.with_(name=name, source=f"PyTorch {spec}: {how}")


def is_python_file(where: str) -> bool:
    """torch:MODULE:...'s MODULE names a file (a .py, or a path) rather than a dotted module."""
    return where.endswith(".py") or "/" in where or os.sep in where


def torch_model(where: str, name: str):
    """The nn.Module that CALLABLE `name` of `where` (a dotted module on sys.path or a .py
    file) builds when called with no arguments."""
    torch = importers.import_torch()
    module = _import_file(where) if is_python_file(where) else _import_module(where)
    build = module
    for part in name.split("."):  # Outer.build reaches an attribute of an attribute
        if not hasattr(build, part):
            near = difflib.get_close_matches(part, [n for n in dir(build) if n[:1] != "_"], 1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise WorkloadError(f"{where} has no {name!r}{hint}")
        build = getattr(build, part)
    if not callable(build):
        raise WorkloadError(f"{where}:{name} is {type(build).__name__}, not a callable")
    try:
        model = build()
    except Exception as exc:  # the user's code: one line that names it
        raise WorkloadError(f"{where}:{name}() raised {importers.one_line(exc)}") from exc
    if not isinstance(model, torch.nn.Module):
        raise WorkloadError(
            f"{where}:{name}() returned {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def _import_module(where: str):
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as exc:
        if exc.name and (where == exc.name or where.startswith(exc.name + ".")):
            raise WorkloadError(
                f"no module named {exc.name!r} (torch:MODULE:CALLABLE's MODULE: a module on "
                "the path or a .py file)"
            ) from None
        raise WorkloadError(f"importing {where} raised {importers.one_line(exc)}") from exc
    except (Exception, SystemExit) as exc:  # the user's module, run as it is imported
        raise WorkloadError(f"importing {where} raised {importers.one_line(exc)}") from exc


def _import_file(where: str):
    path = os.path.abspath(where)
    stem = os.path.splitext(os.path.basename(path))[0]
    name = stem if stem.isidentifier() and stem not in sys.modules else f"_netsim_{hash(path)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None:
        raise WorkloadError(f"torch:{where}:...: a module is a .py file or a dotted name")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as an import would: dataclasses and pickle look there
    here = os.path.dirname(path)
    sys.path.insert(0, here)  # as `python FILE` would: its siblings import
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # the user's file, run as it is imported
        sys.modules.pop(name, None)
        raise WorkloadError(f"importing {where} raised {importers.one_line(exc)}") from exc
    finally:
        if here in sys.path:
            sys.path.remove(here)
    return module
