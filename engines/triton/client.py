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
            if scale > MAX_ENSEMBLE_SCALE:
                raise ClientError(f"the server returned {y.shape[1]}x{y.shape[2]} for a {h}x{w} image: more than "
                                  f"x{MAX_ENSEMBLE_SCALE}, refused")
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


# ----------------------------------------------------------------- HTTP with one deadline and a size bound

MAX_ENSEMBLE_SCALE = 8  # the ensemble's scale is not in its config: a larger result is refused
_SLACK = 1 << 20  # the response's JSON header and framing
MAX_CONFIG_BYTES = 1 << 20


def response_limit(model: ServedModel, image_shape) -> int:
    """The most bytes a correct answer for an HxWxC image can take (the output, at most 4 bytes a
    value, plus 1 MiB for the JSON header): a larger response is refused unread."""
    h, w = int(image_shape[0]), int(image_shape[1])
    if model.mode == "image":
        return h * w * 3 * MAX_ENSEMBLE_SCALE ** 2 + _SLACK
    hp, wp = (processing.padded_size(n, model.pad_multiple, model.min_size) * model.scale for n in (h, w))
    return (model.out_channels or 3) * hp * wp * 4 + _SLACK


def check_timeout(timeout: float) -> float:
    """ClientError naming --timeout unless it is a finite number of seconds > 0."""
    if not (isinstance(timeout, (int, float)) and np.isfinite(timeout) and timeout > 0):
        raise ClientError(f"--timeout {timeout}: must be a finite number of seconds > 0")
    return float(timeout)


def check_address(address: str) -> tuple[str, int | None]:
    """(host, port) of HOST[:PORT]; ClientError naming --url for a scheme (http://...) or a bad port."""
    if "://" in address or "/" in address:
        raise ClientError(f"--url {address}: give HOST:PORT without a scheme or path (the protocol is --protocol)")
    host, colon, port = address.rpartition(":")
    if not colon or (":" in host and not host.endswith("]")):  # no port, or a bare IPv6 address
        return address.strip("[]"), None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ClientError(f"--url {address}: the port must be a number in 1..65535")
    return host.strip("[]"), int(port)


def _http(address: str, method: str, path: str, *, timeout: float, max_bytes: int, body: bytes | None = None,
          headers: dict | None = None):
    """(status, headers, body) of one HTTP request, all of it (connect, send, answer) within ``timeout``
    seconds: the socket is shut down at the deadline, so a server trickling bytes cannot hold it
    longer; a body over ``max_bytes`` (declared or sent) is refused without reading the rest."""
    import http.client
    import socket
    import threading
    import time

    host, port = check_address(address)
    deadline = time.monotonic() + timeout
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    late = threading.Event()

    def expire():
        late.set()
        sock = conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        declared = response.getheader("Content-Length")
        if declared is not None and declared.strip().isdigit() and int(declared) > max_bytes:
            raise ClientError(f"the server announces a {int(declared)}-byte answer, more than the {max_bytes} bytes "
                              f"a correct one takes: refused unread")
        encoding = (response.getheader("Content-Encoding") or "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise ClientError(f"the server answered with Content-Encoding {encoding}, which was not asked for")
        chunks, size = [], 0
        while True:
            if time.monotonic() >= deadline:
                raise TimeoutError
            chunk = response.read1(1 << 20) if hasattr(response, "read1") else response.read(1 << 20)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise ClientError(f"the server's answer exceeds the {max_bytes} bytes a correct one takes: "
                                  f"refused (reading stopped)")
            chunks.append(chunk)
        if late.is_set():
            raise TimeoutError
        return response.status, response, b"".join(chunks)
    except (TimeoutError, socket.timeout):
        raise ClientError(f"no complete answer from {address} within --timeout {timeout:g} s") from None
    except (OSError, http.client.HTTPException) as exc:
        if late.is_set():
            raise ClientError(f"no complete answer from {address} within --timeout {timeout:g} s") from None
        raise ClientError(f"{address}: {str(exc).strip() or type(exc).__name__}") from None
    finally:
        timer.cancel()
        conn.close()


def _server_error(status: int, body: bytes) -> ClientError:
    import json

    try:
        message = json.loads(body).get("error")
    except (ValueError, AttributeError):
        message = None
    return ClientError(f"server error {status}: {str(message or body[:200].decode('utf-8', 'replace')).strip()}")


def http_model_config(address: str, model: str, *, timeout: float) -> dict:
    """GET /v2/models/MODEL/config within ``timeout`` seconds, at most 1 MiB (a server not trusted)."""
    import json
    from urllib.parse import quote

    status, _, body = _http(address, "GET", f"/v2/models/{quote(model)}/config", timeout=timeout,
                            max_bytes=MAX_CONFIG_BYTES)
    if status != 200:
        raise _server_error(status, body)
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise ClientError(f"server model {model!r}: its config is not JSON") from None


def http_infer(module, address: str, model: str, inputs, outputs, *, timeout: float, max_bytes: int):
    """One inference over HTTP (tritonclient.http's request and response encoding) with one deadline
    for the whole request and a bound on the answer's size (``response_limit``)."""
    from urllib.parse import quote

    body, json_size = module.InferenceServerClient.generate_request_body(inputs, outputs=outputs)
    headers = {"Content-Type": "application/octet-stream"}
    if json_size is not None:
        headers["Inference-Header-Content-Length"] = str(json_size)
    status, response, data = _http(address, "POST", f"/v2/models/{quote(model)}/infer", timeout=timeout,
                                   max_bytes=max_bytes, body=body, headers=headers)
    if status != 200:
        raise _server_error(status, data)
    length = response.getheader("Inference-Header-Content-Length")
    if length is not None and not (length.strip().isdigit() and int(length) <= len(data)):
        raise ClientError(f"the server's answer declares a {length!r}-byte header in {len(data)} bytes")
    try:
        return module.InferenceServerClient.parse_response_body(data, header_length=int(length) if length else None)
    except Exception as exc:  # noqa: BLE001 - a hostile body: one line
        raise ClientError(f"the server's answer is not a Triton response ({str(exc).strip()[:200] or type(exc).__name__})") from None


def grpc_infer(module, address: str, model: str, inputs, outputs, *, timeout: float, max_bytes: int):
    """One inference over gRPC on a channel that refuses an answer over ``max_bytes``
    (``response_limit``; tritonclient's own limit is 2 GB), with gRPC's deadline of ``timeout`` s."""
    limit = int(min(max_bytes, 2**31 - 1))
    client = module.InferenceServerClient(url=address, channel_args=[("grpc.max_receive_message_length", limit)])
    try:
        return client.infer(model, inputs, outputs=outputs, client_timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - InferenceServerException: one line
        status = str(getattr(exc, "status", lambda: "")() or "")
        if "RESOURCE_EXHAUSTED" in status:
            raise ClientError(f"the server's answer exceeds the {limit} bytes a correct one takes: refused") from None
        if "DEADLINE_EXCEEDED" in status:
            raise ClientError(f"no complete answer from {address} within --timeout {timeout:g} s") from None
        raise
    finally:
        client.close()
