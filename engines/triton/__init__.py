"""Triton Inference Server: model repositories (``repository``, ``config``, ``readme``), the release table
(``releases``) and the image pre/post-processing shared by the server-side Python models and
restore-client (``processing``). See docs/SCALE_OUT.md."""
