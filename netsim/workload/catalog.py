"""The built-in workloads by name, and `resolve`: what `--workload W` may name.

Every built-in is generated from its architecture's definition (convnets, transformers),
never typed in; the tests hold their parameter counts to the published ones. Their compute
is FLOPs per sample, which a device turns into time (netsim.workload.workload.Workload.times).
"""

from __future__ import annotations

import os

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


def builtin(name: str, seq_len: int | None = None) -> Workload:
    if name not in BUILTINS:
        raise WorkloadError(f"no built-in workload {name!r}; choose one of {', '.join(BUILTINS)}")
    if seq_len is not None and name not in SEQUENCE_MODELS:
        raise WorkloadError(f"--seq-len is for sequence models, not {name}")
    return BUILTINS[name](seq_len)


def resolve(spec: str, seq_len: int | None = None) -> Workload:
    """A built-in's name, a workload file (TOML or JSON), an ASTRA-sim 1.0 or SimAI workload
    file (text: its data-parallel lines), or a run directory of ours."""
    if spec in BUILTINS:
        return builtin(spec, seq_len)
    if seq_len is not None:
        raise WorkloadError("--seq-len is for the built-in sequence models")
    if os.path.isdir(spec):
        return importers.from_run_dir(spec)
    if not os.path.exists(spec):
        raise WorkloadError(
            f"--workload {spec!r} is neither a built-in ({', '.join(BUILTINS)}) nor a file "
            f"or run directory"
        )
    if importers.is_astra(spec):
        return importers.from_astra(spec)
    return load(spec)
