"""Requests to a Triton server for restore-client: one image in, one image out.

Two kinds of served model, told apart by the model's config as the server reports it:

- ``image``: the ``<name>_image`` ensemble of ``--with-preprocess`` (first input TYPE_UINT8): the
  image goes as (1, H, W, C) uint8 and comes back restored; the server pads and crops;
- ``tensor``: the network itself: the client pads with ``processing.preprocess`` using the
  pad_multiple / in_channels / scale parameters of its config and crops with ``postprocess``.

``tritonclient`` is imported lazily (``import_client``), so the rest of the project never needs it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engines.triton import processing

PROTOCOLS = {"http": "localhost:8000", "grpc": "localhost:8001"}


class ClientError(ValueError):
    """Bad input for the client (server, model, image): one clear message."""


def import_client(protocol: str):
    """``tritonclient.http`` or ``tritonclient.grpc``, or one ClientError saying how to install it."""
    if protocol not in PROTOCOLS:
        raise ClientError(f"--protocol {protocol!r}: choose http or grpc")
    try:
        if protocol == "http":
            import tritonclient.http as module
        else:
            import tritonclient.grpc as module
    except ImportError as exc:
        raise ClientError(f"restore-client needs tritonclient ({exc}): pip install 'restormer-deploy[triton]' "
                          f"or pip install 'tritonclient[grpc,http]'") from None
    return module


@dataclass
class ServedModel:
    name: str
    mode: str  # image | tensor
    input_name: str
    output_name: str
    in_channels: int = 3
    pad_multiple: int = 1
    scale: int = 1
    min_size: int = processing.MIN_SIZE
    dtype: type = np.float32


def served_model(name: str, config: dict) -> ServedModel:
    """From the model's config as JSON (HTTP ``get_model_config``, or gRPC's with ``as_json=True``)."""
    config = config.get("config", config)
    inputs, outputs = config.get("input") or [], config.get("output") or []
    if not inputs or not outputs:
        raise ClientError(f"model {name!r} has no inputs or outputs in its config")
    first = inputs[0]
    if first.get("data_type") == "TYPE_UINT8":
        return ServedModel(name, "image", first["name"], outputs[0]["name"])
    if len(inputs) != 1:
        raise ClientError(f"model {name!r} takes {len(inputs)} inputs; restore-client sends images only")
    params = {k: v.get("string_value", "") for k, v in (config.get("parameters") or {}).items()}
    missing = [k for k in ("in_channels", "pad_multiple", "scale") if k not in params]
    if missing:
        raise ClientError(f"model {name!r} lacks the parameters {', '.join(missing)} (write its repository with "
                          f"restore-export --format triton-repo)")
    if first.get("data_type") not in ("TYPE_FP32", "TYPE_FP16"):
        raise ClientError(f"model {name!r}: input {first['name']!r} is {first.get('data_type')}, expected float")
    from tritonclient.utils import triton_to_np_dtype

    return ServedModel(name, "tensor", first["name"], outputs[0]["name"], int(params["in_channels"]),
                       int(params["pad_multiple"]), int(params["scale"]),
                       int(params.get("min_size", processing.MIN_SIZE)),
                       triton_to_np_dtype(first["data_type"].removeprefix("TYPE_")))


def encode(module, model: ServedModel, image: np.ndarray):
    """HxWxC integer image -> (inputs, outputs, context for ``decode``) for ``client.infer``."""
    from tritonclient.utils import np_to_triton_dtype

    if model.mode == "image":
        if image.dtype != np.uint8:
            raise ClientError(f"{model.name} takes 8-bit images, this one is {image.dtype} (serve the network itself "
                              f"and use --model {model.name.removesuffix('_image')} for 16-bit data)")
        array, context = np.ascontiguousarray(image[None]), None
    else:
        array, context = processing.preprocess(image, model.in_channels, model.pad_multiple, model.min_size, model.dtype)
    tensor = module.InferInput(model.input_name, list(array.shape), np_to_triton_dtype(array.dtype))
    tensor.set_data_from_numpy(array)
    return [tensor], [module.InferRequestedOutput(model.output_name)], (context, image.dtype)


def decode(model: ServedModel, result, context) -> np.ndarray:
    """An InferResult (anything with ``as_numpy(name)``) -> the restored HxWxC image."""
    shape, dtype = context
    y = result.as_numpy(model.output_name)
    if y is None:
        raise ClientError(f"the response has no output {model.output_name!r}")
    if model.mode == "image":
        return y[0]
    return processing.postprocess(y, shape, model.scale, dtype)[0]
