"""What keeps a failure short and named: the watchdog thread that ends a collective which
makes no progress, naming the ranks that do not answer (watchdog), and the faults injected
on purpose to prove it (faults).
May import: exits.
"""
