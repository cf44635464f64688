"""gpulab's settings (schema, loader, apply_config), the hub's config file and the `gpulab` CLI."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("gpulab")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
