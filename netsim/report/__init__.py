"""A run's records read back: every rank's steps on one clock with who waited for whom
(traffic), the figures of summary.json (summary), the text people read and its units
(text), the merged files steps.jsonl, links.csv and timeline.json (files, timeline), PNG
plots (plots, with the optional matplotlib), an asynchronous run's bytes per link, server
incast, staleness and waits (downpour; its plots: downpour_plots), and runs side by side:
accuracy against time and bytes, time to a target (compare). May import netsim.algorithms
(the run's schedule, byte count and busbw), netsim.record (the run directory and its
files) and netsim.errors, and NumPy.
"""
