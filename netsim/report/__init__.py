"""A run's records read back: every rank's steps on one clock with who waited for whom
(traffic), the figures of summary.json (summary), the text people read and its units
(text), the merged files steps.jsonl, links.csv and timeline.json (files, timeline), and
PNG plots (plots, with the optional matplotlib). May import netsim.algorithms (the run's
schedule and byte count), netsim.record (the run directory) and NumPy.
"""
