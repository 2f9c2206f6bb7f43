"""allreduce_train: data-parallel training over MPI, every rank a full replica, the gradients
averaged by an all-reduce before the identical update on every rank (or, --mode async,
Downpour SGD against parameter servers). Run it with `mpirun -n 4 python -m allreduce_train`;
see `python -m allreduce_train --help`.

Its rooms, each allowed to import only those listed before it, beside NumPy and the parts of
netsim its own __init__.py names (tests/allreduce_train/test_rooms.py holds them to it):

    exits       the exit codes and the errors every room raises (UsageError, Fatal, ...)
    comm        MPI: World, MpiTransport, Agreement, WatchChannel; the only mpi4py importer
    maths/      the replica's maths: model, optimizer, data, the array backend, kernels
    guard/      what keeps a failure short: the watchdog, injected faults
    config/     the run's one configuration, its command line, its little languages, memory
    exchange/   the gradient path: one executor interface, the schedules, staging, NCCL,
                the factory that picks, auto's choice, buckets overlapped with backward,
                compression, the shared-memory path
    run/        one run's lifecycle for every role: the loop's services, the run directory's
                one writer, checkpoints, what rank 0 prints
    sync/       the sync role: a Trainer per rank, the all-reduce every step
    downpour/   the async role: replicas and parameter servers (Downpour SGD)
    __main__    python -m allreduce_train: parse, set up, pick the role, run, exit codes
    probe       python -m allreduce_train.probe: what calibration (netsim) measures

mpi4py only in comm.py, CuPy only in maths/backend.py and exchange/nccl.py, so that the rest
runs under plain pytest.
"""
