"""The culler: stops servers idle past their profile's timeout, GPU servers by GPU activity too
(a hub service; decisions.py decides, service.py asks the hub and acts, config.py registers it)."""
