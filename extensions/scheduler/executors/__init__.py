"""Where runs execute: local processes, or Kubernetes Jobs, behind protocol.Executor. Both start the same runner program."""
