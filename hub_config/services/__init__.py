"""What every gpulab hub service shares: its registration with the hub (config.py), request
handlers with one error path (web.py), pages that look like the hub's (pages.py), and the
process entry point (runner.py)."""
