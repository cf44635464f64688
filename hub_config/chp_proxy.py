"""configurable-http-proxy (proxy.kind), run as the proxy's own account when the hub is root.

JupyterHub starts CHP as its own user, which for a root hub means a Node.js process facing the
network as root. CHP needs nothing root has, apart from binding a public port below 1024: the
same account and setpriv prefix as traefik (proxy.py), with that one capability kept where
needed, and a copy of the TLS certificate and key it can read. JupyterHub's own supervision of
CHP (check_running, the pid file) is unchanged: it starts this command again.
"""

from __future__ import annotations

import os
from pathlib import Path

from jupyterhub.proxy import ConfigurableHTTPProxy
from traitlets import Any, Unicode

from gpulab.hub_config.services.service_account import ServiceAccount, prepare

from .proxy import as_account, readable_copy


class OwnAccountCHP(ConfigurableHTTPProxy):
    run_as = Unicode(
        "",
        config=True,
        help="""System account CHP runs as when the hub runs as root (created if missing; it owns
        `account_folder`). Default "": the hub's user. Example "gpulab_svc-proxy".""",
    )
    account_folder = Unicode(
        "",
        config=True,
        help="""The folder the account owns, where the copy of the TLS files goes. Default "":
        next to the pid file. Example "/srv/gpulab/.gpulab/proxy".""",
    )

    _plain_command = Any(None)  # the command before the account's prefix (start runs again on a restart)

    async def start(self):
        if self.run_as and os.geteuid() == 0:
            if self._plain_command is None:
                self._plain_command = list(self.command)
                folder = Path(self.account_folder or Path(self.pid_file).resolve().parent)
                entry = prepare(ServiceAccount(self.run_as, (str(folder),)))
                if self.ssl_cert and self.ssl_key:
                    self.ssl_cert, self.ssl_key = (readable_copy(Path(path), folder / "tls" / name, entry)
                                                   for path, name in ((self.ssl_cert, "cert.pem"),
                                                                      (self.ssl_key, "key.pem")))
                self.command = [*as_account(entry, self.public_url), *self._plain_command]
        await super().start()
