"""The curated images and `catalog.yaml`, the one list of environments gpulab offers."""
