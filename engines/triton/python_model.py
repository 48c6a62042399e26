"""Triton Python-backend model: image pre- or post-processing around a restoration network.

Copied as ``model.py`` (with ``processing.py`` beside it) by ``restore-export --format triton-repo
--with-preprocess``; runs inside the Triton container, so it needs numpy and nothing of this
project. The config's ``role`` parameter selects what it does:

- ``pre``: IMAGE (N, H, W, C) uint8 -> INPUT (N, C_model, H', W') in the network's input dtype
  and ORIGINAL_SHAPE (N, 3) int32;
- ``post``: OUTPUT (N, C', sH', sW') and ORIGINAL_SHAPE -> IMAGE (N, sH, sW, C) uint8.
"""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import processing  # noqa: E402  (the copy beside this file)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.role = params["role"]
        self.in_channels = int(params["in_channels"])
        self.pad_multiple = int(params["pad_multiple"])
        self.min_size = int(params.get("min_size", processing.MIN_SIZE))
        self.scale = int(params["scale"])
        if self.role == "pre":
            out = pb_utils.get_output_config_by_name(config, "INPUT")
            self.dtype = pb_utils.triton_string_to_numpy(out["data_type"])
        elif self.role != "post":
            raise ValueError(f"unknown role {self.role!r} (pre or post)")

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                responses.append(pb_utils.InferenceResponse(output_tensors=self._run(request)))
            except ValueError as exc:  # a bad image fails its own request, not the batch
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(exc))))
        return responses

    def _run(self, request):
        if self.role == "pre":
            images = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy()
            x, shape = processing.preprocess(images, self.in_channels, self.pad_multiple, self.min_size, self.dtype)
            return [pb_utils.Tensor("INPUT", x), pb_utils.Tensor("ORIGINAL_SHAPE", shape)]
        y = pb_utils.get_input_tensor_by_name(request, "OUTPUT").as_numpy()
        shape = pb_utils.get_input_tensor_by_name(request, "ORIGINAL_SHAPE").as_numpy()
        return [pb_utils.Tensor("IMAGE", processing.postprocess(y, shape, self.scale, np.uint8))]
