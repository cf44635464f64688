"""The local backend: servers and scheduled runs are processes on this machine, each under its
owner's system account when gpulab runs as root; GPUs come from this machine's ledger."""
