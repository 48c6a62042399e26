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

from restormer_deploy.engines.triton import processing
from restormer_deploy.restormer.errors import BadInput

PROTOCOLS = {"http": "localhost:8000", "grpc": "localhost:8001"}


class ClientError(BadInput):
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
    out_channels: int | None = None  # None: 1 or 3


FLOAT_DTYPES = {"TYPE_FP32": np.float32, "TYPE_FP16": np.float16}


def _config_error(name: str, what: str) -> ClientError:
    return ClientError(f"server model {name!r}: config {what}")


def _int(name: str, value, what: str, low: int = 1) -> int:
    """An integer of the config (gRPC's JSON gives int64 as strings) that is at least ``low``."""
    try:
        number = None if isinstance(value, bool) or not isinstance(value, (int, str)) else int(value)
    except ValueError:
        number = None
    if number is None:
        raise _config_error(name, f"has {what} {value!r}, expected an integer")
    if number < low:
        raise _config_error(name, f"has {what} {number}, expected at least {low}")
    return number


def _tensor(name: str, config: dict, role: str, types, batching: bool) -> tuple[str, str, list[int]]:
    """(name, data type, the four dims with the batch axis) of the config's first input or output."""
    tensors = config.get(role)
    if not isinstance(tensors, list) or not tensors or not all(isinstance(t, dict) for t in tensors):
        raise _config_error(name, f"has no {role} list")
    t = tensors[0]
    if not isinstance(t.get("name"), str) or not t["name"]:
        raise _config_error(name, f"{role} has no name")
    dtype = t.get("data_type")
    if dtype not in types:
        raise _config_error(name, f"{role} {t['name']!r} has data type {dtype}, expected {' or '.join(types)}")
    dims = t.get("dims")
    if not isinstance(dims, list):
        raise _config_error(name, f"{role} {t['name']!r} has no dims")
    dims = ([-1] if batching else []) + [_int(name, d, f"{role} dims {dims}", low=-1) for d in dims]
    if len(dims) != 4:
        raise _config_error(name, f"{role} {t['name']!r} has dims {t['dims']}"
                                  f"{' (after the batch axis)' if batching else ''}: expected 4-D images")
    return t["name"], dtype, dims


def _parameters(name: str, config: dict) -> dict[str, str]:
    params = config.get("parameters") or {}
    if not isinstance(params, dict):
        raise _config_error(name, "parameters are not a JSON object")
    for key, value in params.items():
        if not isinstance(value, dict) or not isinstance(value.get("string_value", ""), str):
            raise _config_error(name, f"parameter {key!r} is {value!r}, expected {{'string_value': ...}}")
    return {k: v.get("string_value", "") for k, v in params.items()}


def _channels(name: str, value, what: str) -> int:
    channels = _int(name, value, what)
    if channels not in (1, 3):
        raise _config_error(name, f"has {what} {channels}: only 1 or 3 channels are supported")
    return channels


def served_model(name: str, config) -> ServedModel:
    """From the model's config as JSON (HTTP ``get_model_config``, or gRPC's with ``as_json=True``).
    The server is not trusted: anything malformed is one ClientError naming the model."""
    if isinstance(config, dict) and "config" in config:  # gRPC as_json wraps it
        config = config["config"]
    if not isinstance(config, dict):
        raise _config_error(name, f"is not a JSON object ({type(config).__name__})")
    batching = _int(name, config.get("max_batch_size", 0), "max_batch_size", low=0) > 0
    inputs = config.get("input")
    image = bool(inputs) and isinstance(inputs, list) and isinstance(inputs[0], dict) and inputs[0].get("data_type") == "TYPE_UINT8"
    types = ("TYPE_UINT8",) if image else tuple(FLOAT_DTYPES)
    in_name, in_type, in_dims = _tensor(name, config, "input", types, batching)
    out_name, _, out_dims = _tensor(name, config, "output", types, batching)
    if image:
        return ServedModel(name, "image", in_name, out_name)
    if len(inputs) != 1:
        raise ClientError(f"model {name!r} takes {len(inputs)} inputs; restore-client sends images only")
    params = _parameters(name, config)
    missing = [k for k in ("in_channels", "pad_multiple", "scale") if k not in params]
    if missing:
        raise ClientError(f"model {name!r} lacks the parameters {', '.join(missing)} (write its repository with "
                          f"restore-export --format triton-repo)")
    in_channels = _channels(name, params["in_channels"], "parameter in_channels")
    out_channels = (_channels(name, params["out_channels"], "parameter out_channels") if "out_channels" in params else
                    _channels(name, out_dims[1], "output channels") if out_dims[1] != -1 else None)
    for role, dims, channels in (("input", in_dims, in_channels), ("output", out_dims, out_channels)):
        if dims[1] != -1 and channels is not None and dims[1] != channels:
            raise _config_error(name, f"{role} has {dims[1]} channels (dims {dims}), its parameters say {channels}")
    return ServedModel(name, "tensor", in_name, out_name, in_channels,
                       _int(name, params["pad_multiple"], "parameter pad_multiple"),
                       _int(name, params["scale"], "parameter scale"),
                       _int(name, params.get("min_size", processing.MIN_SIZE), "parameter min_size"),
                       FLOAT_DTYPES[in_type], out_channels)


def encode(module, model: ServedModel, image: np.ndarray):
    """HxWxC integer image -> (inputs, outputs, context for ``decode``) for ``client.infer``."""
    from tritonclient.utils import np_to_triton_dtype

    if model.mode == "image":
        if image.dtype != np.uint8:
            raise ClientError(f"{model.name} takes 8-bit images, this one is {image.dtype} (serve the network itself "
                              f"and use --model {model.name.removesuffix('_image')} for 16-bit data)")
        array, context = np.ascontiguousarray(image[None]), np.array([image.shape], np.int32)
    else:
        array, context = processing.preprocess(image, model.in_channels, model.pad_multiple, model.min_size, model.dtype)
    tensor = module.InferInput(model.input_name, list(array.shape), np_to_triton_dtype(array.dtype))
    tensor.set_data_from_numpy(array)
    return [tensor], [module.InferRequestedOutput(model.output_name)], (context, image.dtype)


def _response(model: ServedModel, result) -> np.ndarray:
    y = result.as_numpy(model.output_name)
    if y is None:
        raise ClientError(f"the response has no output {model.output_name!r}")
    y = np.asarray(y)
    want = "u" if model.mode == "image" else "f"
    if y.dtype.kind != want or (want == "u" and y.dtype != np.uint8):
        raise ClientError(f"the server returned {y.dtype} values, expected {'uint8' if want == 'u' else 'float'}")
    return y


def _check_shape(y: np.ndarray, want: tuple) -> None:
    """``want``: the expected shape, -1 for any size, None for 1 or 3 channels."""
    def fits(n, w):
        return n in (1, 3) if w is None else n > 0 if w == -1 else n == w

    if y.ndim != len(want) or not all(fits(n, w) for n, w in zip(y.shape, want)):
        expected = "x".join({None: "C", -1: "?"}.get(w, str(w)) for w in want)
        raise ClientError(f"the server returned shape {'x'.join(map(str, y.shape))}, expected {expected}")


def _size(shape) -> tuple[int, int]:
    h, w, _ = (int(v) for v in np.asarray(shape).reshape(-1, 3)[0])
    return h, w


def decode(model: ServedModel, result, context) -> np.ndarray:
    """An InferResult (anything with ``as_numpy(name)``) -> the restored HxWxC image. The response is
    checked (dtype, shape, finite values): a broken server fails this image, it never writes one."""
    shape, dtype = context
    y = _response(model, result)
    if model.mode == "image":  # the ensemble's scale is not in its config: any integer one, same on both axes
        want = (1, -1, -1, None)
        if shape is not None and y.ndim == 4:
            h, w = _size(shape)
            scale = max(y.shape[1] // h, 1)
            want = (1, h * scale, w * scale, None)
        _check_shape(y, want)
        return y[0]
    h, w = _size(shape)
    _check_shape(y, (1, model.out_channels, processing.padded_size(h, model.pad_multiple, model.min_size) * model.scale,
                     processing.padded_size(w, model.pad_multiple, model.min_size) * model.scale))
    if not np.isfinite(y).all():
        raise ClientError(f"the server returned {np.count_nonzero(~np.isfinite(y))} NaN or Inf values "
                          f"(a broken model or engine): nothing written")
    return processing.postprocess(y, shape, model.scale, dtype)[0]
