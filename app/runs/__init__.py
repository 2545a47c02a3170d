"""Runs and workers: starting, executing and following runs, in-process (embedded) or
on worker processes over the queue (distributed), with claims fencing every write."""
