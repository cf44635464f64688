"""MLflow for everyone on the hub: the tracking server as a hub service, authenticated with hub
tokens and hub OAuth, with MLflow's own permission model and gpulab's project experiments.

config.py is the hub side (an `apply_config` step); the service process is `python -m
gpulab.extensions.mlflow` (app.py builds it), which serves artifacts only from its own root
(artifacts.py), bounds what MLflow parses (limits.py) and, under a root hub, runs as its own
account. Importing this package does not import MLflow.
"""
