"""User servers: the spawn form, the local and Kubernetes backends that start them, pod manifests."""
