"""allreduce_train: data-parallel training over MPI, every rank a full replica, the gradients
averaged by an all-reduce before the identical update on every rank. May import netsim (the
algorithms it executes, the recorder it writes through, the reports it prints) and NumPy;
mpi4py only in comm.py and CuPy only in backend.py, so the rest runs under plain pytest.

Run it with `mpirun -n 4 python -m allreduce_train`; see `python -m allreduce_train --help`.
Its modules: __main__ (main and setup), options (the command line), config (the run's one
frozen configuration), comm (World and MpiTransport), collectives (the executor of a
schedule), backend (NumPy or CuPy), model, optim, data, train (a rank's Trainer), run (the
run and what it writes), console (what rank 0 prints), probe (the measurements calibration
fits).
"""
