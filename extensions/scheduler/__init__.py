"""Scheduled notebook runs with Papermill, run centrally, as their owner, on the hub's profiles."""
