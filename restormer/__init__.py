"""PyTorch reference of Restormer and of reverse convolution (Converse2D) with the ConverseNet models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("restormer-deploy")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
