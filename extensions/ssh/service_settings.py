"""What the hub hands the SSH gateway (GPULAB_SERVICE_SETTINGS), typed: config.py builds it, the
gateway reads it back at its entry."""

from __future__ import annotations

from gpulab.hub_config.typed_settings import LogLevel, Model


class GatewayServiceSettings(Model):
    port: int = 2222
    allow_token_password: bool = False
    start_stopped_servers: bool = True
    max_failed_attempts: int = 5
    failure_window: int = 600
    lockout: int = 900
    bind_address: str = ""
    public_host: str = ""
    servers_url: str = ""
    start_timeout: int = 120
    database_url: str = ""
    log_level: LogLevel = "INFO"
    host_key: str = ""
    master_secret: str = ""
    audit_log: str = ""
