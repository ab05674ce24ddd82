"""The installed package's version (what ``--version``, the API and Sentry report)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("metosim")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
