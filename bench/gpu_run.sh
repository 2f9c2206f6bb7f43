#!/usr/bin/env bash
# bench/gpu_check.py on a lent GPU machine, in one command (device `run`):
#
#     bash bench/gpu_run.sh            # there, with carry [".whl"]; the log lands in $OUT
#     bash bench/gpu_run.sh --device cpu   # here: the same steps as a dry run
#
# That machine has no package registry but has Python 3.12 with CuPy (cupy-cuda13x), PyTorch,
# NumPy, scikit-learn and threadpoolctl (the tool library's device/KINDS.md); it lacks MPI.
# So the MPI wheels travel in .whl (15 MB, ignored by git), fetched here first with:
#
#     echo /.whl/ >> .git/info/exclude
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#         --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux1_x86_64 \
#         -d .whl mpich==5.0.2 mpi4py==4.1.2
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/gpu-run}"
mkdir -p "$out"
python="${PYTHON:-python3}"
if compgen -G ".whl/*.whl" >/dev/null; then
    # --prefix, not --target: --target drops the wheel's data files (mpich's lib/); and over
    # the mpi4py that machine has, which finds no MPI library there
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --ignore-installed \
        --prefix /tmp/site .whl/*.whl
    site=$("$python" -c 'import sys; print("/tmp/site/lib/python%d.%d/site-packages" % sys.version_info[:2])')
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" MPIEXEC=/tmp/site/bin/mpiexec
    export LD_LIBRARY_PATH="/tmp/site/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"  # libmpi
fi
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}"
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || true
    "$python" -c "import sys, numpy; print(sys.version.split()[0], 'numpy', numpy.__version__)"
    "$python" -c "import cupy; print('cupy', cupy.__version__)" 2>&1 || true
    "$python" -c "import torch; print('torch', torch.__version__)" 2>&1 || true
} | tee "$out/versions.txt"
# the runs stay on the machine: only these logs come back (at most 8 files)
"$python" bench/gpu_check.py --out /tmp/gpu-check-runs "$@" 2>&1 | tee "$out/gpu_check.log"
