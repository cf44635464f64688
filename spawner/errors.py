"""Errors a spawn reports to the person who asked for the server."""


class SpawnError(RuntimeError):
    """A spawn that cannot succeed, with a message for the user.

    JupyterHub shows an exception's `jupyterhub_message` on the spawn page and in the
    REST API's error body; any other exception becomes a bare "Internal Server Error".
    """

    def __init__(self, message: str):
        super().__init__(message)
        self.jupyterhub_message = message
