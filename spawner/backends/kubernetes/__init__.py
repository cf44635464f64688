"""The kubernetes backend: servers are pods (KubeSpawner), scheduled runs are Jobs; GPUs come from
the cluster's NVIDIA device plugin, homes from persistent volume claims."""
