"""What a run writes as it runs: the Recorder the executor stores each step's clock readings
through (recorder), the binary step file it writes (stepfile: the format and its reader), a
parameter server's file of the fetches and pushes it served (serverfile, --mode async), and
the run directory that holds them with the run's configuration (rundir). May import
netsim.errors, nothing else of ours: the training program imports it on every rank, so it
stays small and fast, and it knows nothing of MPI (the executor hands it the messages it
sends). The standard library only, but for NumPy in serverfile (its records read back as
one array).
"""
