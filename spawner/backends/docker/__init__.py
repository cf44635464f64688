"""The docker backend: servers and scheduled runs are containers of each environment's image on
this machine (Docker Engine or Podman's Docker API), as the same system accounts and homes as
the local backend, GPUs from the same ledger."""
