"""Chaos drills: break a local pair the ways production can break, and judge
from the venue's own record whether it stayed safe.

  netns.py, netfilter.py, toxics.py, processes.py   the fault injectors
  lab.py, drill.py                                  the pair under drill and what is done to it
  scenarios.py                                      what each drill does and warrants
  evidence.py, checker.py                           the records and the invariants (pure)
  report.py, stats.py                               timeline text, summary JSON, PNG; percentiles
  runner.py, cli.py                                 `understudy drill`; bench/drills.py runs the matrix
"""
