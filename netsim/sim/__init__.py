"""A run modelled on a topology: the simulator that executes a schedule on its links
(simulate), the predictions built on it, one step, a sweep and the replay of a recorded run
(predict; predict_text prints them, and nccl's), NCCL's own model of a call on the modelled
links (nccl, its constants in nccl_tables, RCCL's in rccl_tables), and asynchronous Downpour
SGD on a cluster (downpour: its incast simulated beside its closed form, its steady state),
and a training step of a workload, bucket by bucket, its all-reduces overlapping the
backward (step; step_text prints it); and a schedule as a node's shared memory runs it
(shared_memory: what the simulator charges there beyond messages). Values in, figures
out: netsim.commands turns the command line into values, netsim.report reads a recorded
run. May import netsim.algorithms, netsim.cluster, netsim.report, netsim.workload and
netsim.errors; not launch, nor this machine's calibration (netsim.calibration), which is
built on it.
"""
