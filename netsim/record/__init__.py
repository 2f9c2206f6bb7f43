"""What a run writes as it runs: the Recorder the executor stores each step's clock readings
through, the binary step file it writes (stepfile: the format and its reader), and the run
directory that holds them with the run's configuration (rundir). Standard library and
netsim.errors only: the training program imports it on every rank, so it stays small and
fast, and it knows nothing of MPI (the executor hands it the messages it sends).
"""
