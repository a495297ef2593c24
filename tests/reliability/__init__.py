"""A reliability suite in the spirit of Jepsen's total-queue checker (issue 11).

A run submits jobs, records what it submitted (history.py), lets real workers
process them while a nemesis (nemeses.py) kills, freezes and cuts off what they
depend on, heals, waits a generous bound for every job to end, then reads what
the system holds and classifies every submitted item (checker.py): ok, lost,
duplicated, stale, never-ending. runner.py puts it together; cluster.py owns the
processes and servers. The bounded run is test_reliability.py; the long one is
benchmarks/reliability.py.
"""
