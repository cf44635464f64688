"""Compute shared by interactive servers and scheduled runs: profiles, quotas and budgets, the GPU
ledger and its usage ledger, limits.

`claims.claim` is the one way either purpose gets compute; the spawner and the scheduler's
executors are backends of it, not copies.
"""
