"""This machine, calibrated: measured through allreduce_train.probe under mpirun (measure,
which `launch` starts: the one package of netsim that may import launch), modelled as one
node of physical parameters (machine) and fitted to the measurements (fitting, with SciPy's
least squares); the fitted node kept per host and the all-reduce it predicts fastest, for
`--allreduce auto` (choose); and a run on a cluster emulated on this machine
(`python -m launch.emulate`) as a topology, the calibrated node K times on the emulated
links (emulated). May import every other netsim package (the simulator is the model it
fits) and launch; nothing in netsim imports it but the command line.
"""
