"""Where project folders live: local folders with system groups and ACLs (local.py), or
sub-paths of one shared volume on Kubernetes (kubernetes.py)."""
