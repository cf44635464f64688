"""gpulab's extensions to the hub: one subpackage per feature, plus the service toolkit they share."""
