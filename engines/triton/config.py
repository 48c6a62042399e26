"""Triton model configurations for an exported restoration network (and its image pre/post models).

``network_config`` describes the network itself (TensorRT plan or ONNX Runtime): inputs and outputs
from the ONNX file, height and width -1, dynamic batching, instance groups, and the artefact
metadata as string parameters (restore-client reads pad_multiple/scale/... from them).
``processing_configs`` adds the optional Python-backend ``<name>_pre`` / ``<name>_post`` models and
the ``<name>_image`` ensemble that chains them (uint8 image in, uint8 image out).
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from restormer_deploy.engines.triton import processing
from restormer_deploy.engines.triton.pbtxt import Enum
from restormer_deploy.export.contract import METADATA_KEYS, OPTIONAL_METADATA_KEYS
from restormer_deploy.restormer.errors import BadInput

# backend -> (platform, backend, model file)
NETWORK_BACKENDS = {
    "tensorrt": ("tensorrt_plan", "tensorrt", "model.plan"),
    "onnxruntime": ("onnxruntime_onnx", "onnxruntime", "model.onnx"),
}
KINDS = {"gpu": "KIND_GPU", "cpu": "KIND_CPU", "auto": "KIND_AUTO"}
ONNX_TO_TRITON = {
    onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.FLOAT16: "TYPE_FP16", onnx.TensorProto.BFLOAT16: "TYPE_BF16",
    onnx.TensorProto.DOUBLE: "TYPE_FP64", onnx.TensorProto.INT64: "TYPE_INT64", onnx.TensorProto.INT32: "TYPE_INT32",
    onnx.TensorProto.INT8: "TYPE_INT8", onnx.TensorProto.UINT8: "TYPE_UINT8", onnx.TensorProto.BOOL: "TYPE_BOOL",
}
FLOAT_TYPES = ("TYPE_FP32", "TYPE_FP16")
ENSEMBLE_SUFFIXES = {"pre": "_pre", "post": "_post", "image": "_image"}


class RepositoryError(BadInput):
    """The model or the options do not fit a Triton repository: one clear message."""


@dataclass
class TensorSpec:
    name: str
    data_type: str  # Triton TYPE_*
    dims: list[int]  # the full ONNX shape, -1 where dynamic


def onnx_io(model: onnx.ModelProto) -> tuple[list[TensorSpec], list[TensorSpec]]:
    init = {i.name for i in model.graph.initializer}

    def spec(v):
        t = v.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        return TensorSpec(v.name, ONNX_TO_TRITON.get(t.elem_type, f"ONNX type {t.elem_type}"), dims)

    return [spec(v) for v in model.graph.input if v.name not in init], [spec(v) for v in model.graph.output]


def check_network(inputs: list[TensorSpec], outputs: list[TensorSpec], meta: dict, max_batch_size: int) -> None:
    """The image input and output must be 4-D float NCHW with the metadata's channels; a batching
    config needs a dynamic batch axis on every tensor."""
    if not inputs or not outputs:
        raise RepositoryError("the ONNX model has no inputs or no outputs")
    for role, t, channels in (("input", inputs[0], meta.get("in_channels")), ("output", outputs[0], meta.get("out_channels"))):
        if len(t.dims) != 4:
            raise RepositoryError(f"{role} {t.name!r} has shape {t.dims}: a restoration network takes and gives "
                                  f"4-D NCHW images")
        if t.data_type not in FLOAT_TYPES:
            raise RepositoryError(f"{role} {t.name!r} is {t.data_type}: expected float32 or float16 NCHW")
        if t.dims[1] == -1 or (channels and t.dims[1] != int(channels)):
            raise RepositoryError(f"{role} {t.name!r} has {t.dims[1]} channels (axis 1 of {t.dims}), the metadata "
                                  f"says {channels}: expected NCHW with a fixed channel count")
    if max_batch_size > 0:
        for t in inputs + outputs:
            if not t.dims or t.dims[0] != -1:
                raise RepositoryError(f"{t.name!r} has a fixed batch axis ({t.dims}): export with a dynamic batch "
                                      f"(restore-export does), or pass --max-batch-size 0")


def _dims(t: TensorSpec, max_batch_size: int) -> list[int]:
    return t.dims[1:] if max_batch_size > 0 else t.dims


def _io(tensors: list[TensorSpec], max_batch_size: int) -> list[dict]:
    return [{"name": t.name, "data_type": Enum(t.data_type), "dims": _dims(t, max_batch_size)} for t in tensors]


def _parameters(values: dict) -> list[dict]:
    return [{"key": k, "value": {"string_value": str(v)}} for k, v in values.items()]


def network_config(name: str, backend: str, inputs: list[TensorSpec], outputs: list[TensorSpec], meta: dict,
                   max_batch_size: int, instances: int = 1, kind: str = "gpu", queue_delay_us: int = 100) -> dict:
    platform, backend_name, filename = NETWORK_BACKENDS[backend]
    return {
        "name": name,
        "platform": platform,
        "backend": backend_name,
        "max_batch_size": max_batch_size,
        "default_model_filename": filename,
        "input": _io(inputs, max_batch_size),
        "output": _io(outputs, max_batch_size),
        "instance_group": [{"count": instances, "kind": Enum(KINDS[kind])}],
        # same-size requests are batched (images of different sizes cannot share a tensor)
        "dynamic_batching": {"max_queue_delay_microseconds": queue_delay_us} if max_batch_size > 0 else None,
        "parameters": _parameters({k: meta[k] for k in (*METADATA_KEYS, *OPTIONAL_METADATA_KEYS) if k in meta}),
    }


def processing_configs(name: str, inputs: list[TensorSpec], outputs: list[TensorSpec], meta: dict,
                       max_batch_size: int) -> dict[str, dict]:
    """{model name: config} of the pre/post Python models and the image ensemble."""
    if len(inputs) != 1:
        raise RepositoryError(f"--with-preprocess handles single-input models; this one also takes "
                              f"{', '.join(t.name for t in inputs[1:])} (send all inputs to {name!r} directly)")
    x, y = inputs[0], outputs[0]
    batching = max_batch_size > 0

    def image(tensor_name):
        return {"name": tensor_name, "data_type": Enum("TYPE_UINT8"), "dims": [-1, -1, -1] if batching else [-1, -1, -1, -1]}

    shape = {"name": "ORIGINAL_SHAPE", "data_type": Enum("TYPE_INT32"), "dims": [3] if batching else [-1, 3]}
    params = {"in_channels": meta["in_channels"], "pad_multiple": meta["pad_multiple"], "scale": meta["scale"],
              "min_size": processing.MIN_SIZE}
    pre, post, ensemble = (name + ENSEMBLE_SUFFIXES[k] for k in ("pre", "post", "image"))

    def python_model(model_name, role, model_inputs, model_outputs):
        return {"name": model_name, "backend": "python", "max_batch_size": max_batch_size,
                "input": model_inputs, "output": model_outputs,
                "instance_group": [{"count": 1, "kind": Enum("KIND_CPU")}],
                "parameters": _parameters({"role": role, **params})}

    def mapping(pairs):
        return [{"key": k, "value": v} for k, v in pairs]

    return {
        pre: python_model(pre, "pre", [image("IMAGE")],
                          [{"name": "INPUT", "data_type": Enum(x.data_type), "dims": _dims(x, max_batch_size)}, shape]),
        post: python_model(post, "post",
                           [{"name": "OUTPUT", "data_type": Enum(y.data_type), "dims": _dims(y, max_batch_size)}, shape],
                           [image("IMAGE")]),
        ensemble: {
            "name": ensemble, "platform": "ensemble", "max_batch_size": max_batch_size,
            "input": [image("IMAGE")], "output": [image("RESTORED")],
            "ensemble_scheduling": {"step": [
                {"model_name": pre, "model_version": -1, "input_map": mapping([("IMAGE", "IMAGE")]),
                 "output_map": mapping([("INPUT", "network_input"), ("ORIGINAL_SHAPE", "original_shape")])},
                {"model_name": name, "model_version": -1, "input_map": mapping([(x.name, "network_input")]),
                 "output_map": mapping([(y.name, "network_output")])},
                {"model_name": post, "model_version": -1,
                 "input_map": mapping([("OUTPUT", "network_output"), ("ORIGINAL_SHAPE", "original_shape")]),
                 "output_map": mapping([("IMAGE", "RESTORED")])},
            ]},
        },
    }
