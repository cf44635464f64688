"""Where runs execute: local processes, or Kubernetes Jobs. Both start the same runner program."""
