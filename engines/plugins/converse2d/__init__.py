"""Converse2D TensorRT plugin: CUDA/C++ sources, CMake build and a host build for the tests.

``restormer_deploy.engines.plugins.converse2d.host`` builds the plugin's arithmetic for the CPU (ctypes) and finds
the CUDA tool chain; see README.md in this folder for the plugin itself.
"""

from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent
