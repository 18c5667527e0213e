"""Butler for Python: a companion service for Qlik Sense Enterprise on Windows."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("butler-py")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
