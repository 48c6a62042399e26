"""TensorRT plugins, one folder per plugin (sources, CMake build, README)."""
