"""GPU usage: the Usage page, its REST API and metrics, and the sampler that fills the usage ledger
(config.py registers the service, service.py runs it, core.py answers, api.py serves)."""
