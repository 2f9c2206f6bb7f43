"""A run modelled: the simulator that executes a schedule on a topology (simulate), the
predictions built on it, one step, a sweep and the replay of a recorded run (predict,
printed by predict_text), NCCL's own model of a call on the modelled links (nccl, its
constants in nccl_tables), and the calibration of this machine: measured through
allreduce_train.probe under mpirun (measure), modelled as one node of physical parameters
(machine) and fitted (calibrate).
May import every other netsim package and launch; SciPy for the fit.
"""
