"""Rank program: `python -m allreduce_train ARGS` with every rank on a stand-in GPU
(tests/devicestub.py: NumPy's maths, CuPy's rules), so the GPU path runs whole, from the
model on the device to the staged all-reduce, the records and the checkpoint.

    standin_gpu.py ARGS... [--claim-cuda-aware]

--claim-cuda-aware: the MPI is taken to be CUDA-aware (its arrays reach MPI by DLPack).
"""

import importlib.util
import sys
from pathlib import Path

from allreduce_train import __main__ as entry
from allreduce_train.maths import backend

# tests/devicestub.py by its path: tests/ on sys.path would shadow the netsim package
spec = importlib.util.spec_from_file_location(
    "devicestub", Path(__file__).resolve().parent.parent / "devicestub.py"
)
devicestub = sys.modules["devicestub"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(devicestub)

args = sys.argv[1:]
if "--claim-cuda-aware" in args:
    args.remove("--claim-cuda-aware")
    entry.cuda_aware = lambda: True
backend.select = lambda device, local_rank, local_size: devicestub.gpu(local_size)
sys.exit(entry.main(args))
