"""netsim: the traffic of collectives, recorded on real runs and modelled on clusters.

Pure Python and NumPy: it never imports MPI, a GPU library or allreduce_train (a test reads
the import graph to keep it so), so it runs anywhere, on a laptop far from any cluster. Its
packages, in the order they may import each other (each may import those above it, and
`launch` for finding mpirun):

    algorithms   all-reduce algorithms, each whole: schedule, bytes per rank, closed form
    cluster      clusters as links: the topology TOML format, presets, placement, routing
    record       what a run writes as it runs: the recorder, step files, the run directory
    report       a run's records read back: cross-rank analysis, summary, text, timeline, plots
    sim          a run modelled: the simulator, predict / sweep / replay, calibration

errors.InputError is the one error of bad input; `python -m netsim` turns it into one line.
"""
