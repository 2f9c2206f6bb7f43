"""allreduce_train: data-parallel training over MPI with a ring all-reduce.

Run it with `mpirun -n 4 python -m allreduce_train`; see `python -m allreduce_train --help`.
"""
