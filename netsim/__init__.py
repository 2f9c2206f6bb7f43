"""netsim: the traffic of collectives, recorded on real runs and modelled on clusters.

Python and NumPy (SciPy for calibration's fit; matplotlib, optional, for plots). It never
imports MPI, a GPU library or allreduce_train (a test reads the import graph to keep it so),
so it runs anywhere, on a laptop far from any cluster; calibration starts
allreduce_train.probe under mpirun as a subprocess, by module name (tested too). Its
packages, in the order they may import each other; besides netsim.errors, each may import
of ours only the packages named after it:

    algorithms   all-reduce algorithms, each whole: schedule, bytes per rank, closed form;
                 nccl-tests' busbw
    cluster      clusters as links: the topology TOML format, presets, placement, routing
    record       what a run writes as it runs: the recorder, step files, the run directory
    report       a run's records read back: cross-rank analysis, summary, text, timeline,
                 plots, runs compared, async runs                 algorithms, record
    workload     a model's layers: the workload file format, the built-in models, ASTRA-sim
                 / SimAI / run-directory / PyTorch importers, DDP's bucket plan   record
    sim          a run modelled: the simulator, predict / sweep / replay, NCCL's model,
                 Downpour SGD, a training step of a workload
                                                                  algorithms, cluster,
                                                                  report, workload
    calibration  this machine: measured, fitted, kept per host, the all-reduce it runs
                 fastest; an emulated run on it                   all of the above, launch

Only calibration imports launch (to start the probe under mpirun). errors.InputError is the
one error of bad input; `python -m netsim` (__main__.py: the syntax; commands.py: what each
command does with its arguments; options.py: the types and bounds of option values) turns
it into one line.
"""
