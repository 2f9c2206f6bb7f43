"""netsim: the traffic of collectives, recorded on real runs and modelled on clusters.

Pure Python and NumPy: no MPI, no GPU. `schedules` describes collective algorithms,
`recorder` counts what a run's collectives send, `rundir` reads and writes run directories.
"""
