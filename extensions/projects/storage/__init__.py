"""Where project folders live: local folders with system groups and ACLs (local.py), or
sub-paths of one shared volume on Kubernetes (kubernetes.py)."""

# The spawner backends whose servers run as system accounts on this machine: their projects
# have local folders (made by the root helper), the others none here.
FOLDER_BACKENDS = ("local", "docker")
