"""restore-client without a server: its requests and the decoding of responses, checked with tritonclient's
own InferInput / InferResult classes and the project's padding (restormer_deploy.restormer.tiling), and the command with a
stand-in server object."""

import json
import sys
import types

import numpy as np
import pytest
from typer.testing import CliRunner

from restormer_deploy.restormer.tiling import pad_reflect, padded_size
from restormer_deploy.engines.triton import client as tcl
from restormer_deploy.engines.triton import config as tc
from restormer_deploy.engines.triton.pbtxt import dumps
from restormer_deploy.restormer.imageio import read_image, to_tensor, write_image

mc = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="needs tritonclient[grpc,http] (pip install '.[triton]')")
import tritonclient.grpc as grpcclient  # noqa: E402
import tritonclient.http as httpclient  # noqa: E402
from google.protobuf import json_format, text_format  # noqa: E402
from tritonclient.grpc import service_pb2  # noqa: E402

META = {"in_channels": "3", "out_channels": "3", "scale": "2", "pad_multiple": "8", "preset": "sr"}


def _server_json(cfg: dict) -> dict:
    """A config as the server reports it: our pbtxt parsed by Triton's schema, then as JSON."""
    return json_format.MessageToDict(text_format.Parse(dumps(cfg), mc.ModelConfig()), preserving_proto_field_name=True)


def _configs(io="TYPE_FP32"):
    x = tc.TensorSpec("input", io, [-1, 3, -1, -1])
    y = tc.TensorSpec("output", io, [-1, 3, -1, -1])
    network = tc.network_config("sr", "onnxruntime", [x], [y], META, 4)
    return network, tc.processing_configs("sr", [x], [y], META, 4)["sr_image"]


def test_served_model_from_server_config():
    network, ensemble = _configs("TYPE_FP16")
    m = tcl.served_model("sr", {"config": _server_json(network)})  # gRPC as_json wraps it in "config"
    assert (m.mode, m.input_name, m.output_name, m.in_channels, m.pad_multiple, m.scale, m.dtype) == \
        ("tensor", "input", "output", 3, 8, 2, np.float16)
    e = tcl.served_model("sr_image", _server_json(ensemble))
    assert (e.mode, e.input_name, e.output_name) == ("image", "IMAGE", "RESTORED")
    bare = {k: v for k, v in _server_json(network).items() if k != "parameters"}
    with pytest.raises(tcl.ClientError, match="lacks the parameters"):
        tcl.served_model("sr", bare)


@pytest.mark.parametrize("module", [httpclient, grpcclient], ids=["http", "grpc"])
def test_requests(module):
    img = np.random.default_rng(0).integers(0, 256, (13, 10, 3), dtype=np.uint8)
    raw = (lambda t: t._get_binary_data()) if module is httpclient else (lambda t: t._get_content())
    network, ensemble = _configs()

    (tensor,), (wanted,), _ = tcl.encode(module, tcl.served_model("sr_image", _server_json(ensemble)), img)
    assert (tensor.name(), tensor.datatype(), tensor.shape()) == ("IMAGE", "UINT8", [1, 13, 10, 3])
    assert raw(tensor) == img.tobytes() and wanted.name() == "RESTORED"

    (tensor,), (wanted,), _ = tcl.encode(module, tcl.served_model("sr", _server_json(network)), img)
    expected = pad_reflect(to_tensor(img).numpy(), padded_size(13, 8, 16), padded_size(10, 8, 16))
    assert (tensor.name(), tensor.datatype(), tensor.shape()) == ("input", "FP32", [1, 3, 16, 16])
    np.testing.assert_array_equal(np.frombuffer(raw(tensor), np.float32).reshape(expected.shape), expected)
    assert wanted.name() == "output"


def _grpc_result(name, array):
    """A real tritonclient.grpc.InferResult around a ModelInferResponse, as the server would send it."""
    response = service_pb2.ModelInferResponse(model_name="sr")
    out = response.outputs.add(name=name, datatype={np.uint8: "UINT8", np.float32: "FP32"}[array.dtype.type])
    out.shape.extend(array.shape)
    response.raw_output_contents.append(array.tobytes())
    return grpcclient.InferResult(response)


def test_responses_decode_to_images():
    img = np.random.default_rng(1).integers(0, 65536, (13, 10, 3), dtype=np.uint16)
    network, ensemble = _configs()
    model = tcl.served_model("sr", _server_json(network))
    _, _, context = tcl.encode(grpcclient, model, img)
    x, _ = tcl.processing.preprocess(img, 3, 8)
    upsampled = np.repeat(np.repeat(x, 2, 2), 2, 3)  # a nearest-neighbour x2 "network"
    got = tcl.decode(model, _grpc_result("output", upsampled), context)
    np.testing.assert_array_equal(got, np.repeat(np.repeat(img, 2, 0), 2, 1))

    restored = np.random.default_rng(2).integers(0, 256, (1, 26, 20, 3), dtype=np.uint8)
    image_model = tcl.served_model("sr_image", _server_json(ensemble))
    got = tcl.decode(image_model, _grpc_result("RESTORED", restored), (None, np.uint8))
    np.testing.assert_array_equal(got, restored[0])
    with pytest.raises(tcl.ClientError, match="8-bit"):
        tcl.encode(grpcclient, image_model, img)


class _FakeServer:
    """Stands in for InferenceServerClient: serves ``1 - x`` through a config like restore-export's."""

    def __init__(self, url, network_timeout=None):
        self.url, self.network_timeout = url, network_timeout

    def get_model_config(self, name):
        if name != "inv":
            raise ConnectionRefusedError(f"[Errno 111] Connection refused ({self.url})")
        x, y = tc.TensorSpec("input", "TYPE_FP32", [-1, 3, -1, -1]), tc.TensorSpec("output", "TYPE_FP32", [-1, 3, -1, -1])
        return _server_json(tc.network_config("inv", "onnxruntime", [x], [y], {**META, "scale": "1"}, 4))

    def infer(self, model, inputs, outputs=None, **kwargs):
        assert kwargs == {} and self.network_timeout == 60.0  # no server-side µs timeout; the client's in seconds
        tensor = inputs[0]
        x = np.frombuffer(tensor._get_binary_data(), np.float32).reshape(tensor.shape())
        return types.SimpleNamespace(as_numpy=lambda name: 1 - x if name == "output" else None)


def test_client_command(tmp_path, monkeypatch):
    from restormer_deploy.cli.client import app

    fake = types.SimpleNamespace(InferInput=httpclient.InferInput, InferRequestedOutput=httpclient.InferRequestedOutput,
                                 InferenceServerClient=_FakeServer)
    monkeypatch.setattr(tcl, "import_client", lambda protocol: fake)
    g = np.random.default_rng(4)
    (tmp_path / "in").mkdir()
    images = {"a.png": g.integers(0, 256, (9, 12, 3), dtype=np.uint8), "b.png": g.integers(0, 65536, (20, 7, 1), dtype=np.uint16)}
    for name, img in images.items():
        write_image(tmp_path / "in" / name, img)
    run = CliRunner().invoke(app, [str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", "inv",
                                   "--json", str(tmp_path / "r.json")], catch_exceptions=False)
    assert run.exit_code == 0, run.output
    for name, img in images.items():
        got = read_image(tmp_path / "out" / name)
        assert got.dtype == img.dtype and got.shape == img.shape  # grey in, grey out
        np.testing.assert_array_equal(got, np.iinfo(img.dtype).max - img)
    assert [i["status"] for i in json.loads((tmp_path / "r.json").read_text())["images"]] == ["ok", "ok"]
    again = CliRunner().invoke(app, [str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", "inv",
                                     "--json", str(tmp_path / "r2.json")], catch_exceptions=False)
    assert again.exit_code == 0
    assert [i["status"] for i in json.loads((tmp_path / "r2.json").read_text())["images"]] == ["skipped", "skipped"]
    bad = CliRunner().invoke(app, [str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", "nope"], catch_exceptions=False)
    assert bad.exit_code == 2 and "cannot get model 'nope'" in " ".join(bad.output.split())


def test_missing_tritonclient_is_one_clear_error(tmp_path, monkeypatch):
    from restormer_deploy.cli.client import app

    monkeypatch.setitem(sys.modules, "tritonclient.http", None)  # makes the import fail
    with pytest.raises(tcl.ClientError, match="pip install"):
        tcl.import_client("http")
    (tmp_path / "a.png").write_bytes(b"")
    r = CliRunner().invoke(app, [str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--model", "m"], catch_exceptions=False)
    assert r.exit_code == 2 and "needs tritonclient" in " ".join(r.output.split())
    with pytest.raises(tcl.ClientError, match="choose http or grpc"):
        tcl.import_client("smtp")


# ----------------------------------------------------------------- issue 16: bad folders, untrusted server


def _fake_module(server=_FakeServer):
    return types.SimpleNamespace(InferInput=httpclient.InferInput, InferRequestedOutput=httpclient.InferRequestedOutput,
                                 InferenceServerClient=server)


def _client(args, server=_FakeServer, monkeypatch=None):
    from restormer_deploy.cli.client import app

    monkeypatch.setattr(tcl, "import_client", lambda protocol: _fake_module(server))
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def _snapshot(root):
    return {str(p): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


def _text(result) -> str:
    return " ".join(result.output.split())


@pytest.mark.parametrize("how", ["symlink", "dotdot", "relative"])
def test_output_folder_that_is_the_input_folder_is_refused(tmp_path, monkeypatch, how):
    """Issue 16: -o a symlink to the input folder (or a '..' through one) overwrote the inputs."""
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    write_image(src / "a.png", np.full((9, 12, 3), 7, np.uint8))
    if how == "symlink":
        (tmp_path / "link").symlink_to(src)
        out = tmp_path / "link"
    elif how == "dotdot":  # lexically tmp_path, really in/
        (tmp_path / "deep").symlink_to(src / "sub")
        out = tmp_path / "deep" / ".."
    else:
        (tmp_path / "link").symlink_to("in")
        monkeypatch.chdir(tmp_path)
        out = "link/../link"
    before = _snapshot(tmp_path)
    r = _client([src / "a.png", "-o", out, "--model", "inv", "--overwrite"], monkeypatch=monkeypatch)
    assert r.exit_code == 2 and "error:" in r.output and "a.png" in _text(r) and "choose another -o" in _text(r), r.output
    assert _snapshot(tmp_path) == before


def test_check_output_folder(tmp_path):
    from restormer_deploy.cli.client import check_output_folder

    src = tmp_path / "in"
    src.mkdir()
    (src / "a.png").write_bytes(b"x")
    (tmp_path / "link").symlink_to(src)
    check_output_folder([src / "a.png"], src / "restored")  # inside the input tree, other names: fine
    check_output_folder([src / "a.png"], tmp_path / "new" / "out")  # not there yet
    for out in (src, tmp_path / "link", src / "restored" / "..", tmp_path / "link" / "." ):
        with pytest.raises(ValueError, match="a.png"):
            check_output_folder([tmp_path / "other.png", src / "a.png"], out)


class _GarbageServer(_FakeServer):
    """The first request gets ``garbage(x)``, the others ``1 - x``."""

    garbage = None

    def __init__(self, url, network_timeout=None):
        super().__init__(url, network_timeout)
        self.calls = 0

    def infer(self, model, inputs, outputs=None, **kwargs):
        tensor = inputs[0]
        x = np.frombuffer(tensor._get_binary_data(), np.float32).reshape(tensor.shape())
        self.calls += 1
        y = type(self).garbage(x) if self.calls == 1 else 1 - x
        return types.SimpleNamespace(as_numpy=lambda name: y)


GARBAGE = {
    "nan": lambda x: np.full_like(x, np.nan),
    "inf": lambda x: np.where(np.arange(x.size).reshape(x.shape) == 5, np.inf, x).astype(np.float32),
    "too large": lambda x: np.repeat(np.repeat(x, 2, 2), 2, 3),
    "too small": lambda x: x[:, :, :8, :8],
    "uint8": lambda x: (x * 255).astype(np.uint8),
    "int32": lambda x: (x * 255).astype(np.int32),
    "4 channels": lambda x: np.concatenate([x, x[:, :1]], 1),
    "5-D": lambda x: x[None],
    "batch 2": lambda x: np.concatenate([x, x]),
    "strings": lambda x: np.array([b"oops"], dtype=object),
}


@pytest.mark.parametrize("kind", list(GARBAGE))
def test_garbage_responses_fail_their_image_only(tmp_path, monkeypatch, kind):
    """Issue 16: NaN from the server became an all-black PNG with exit 0; wrong shapes were cropped."""
    monkeypatch.setattr(_GarbageServer, "garbage", staticmethod(GARBAGE[kind]))
    (tmp_path / "in").mkdir()
    a, b = np.full((20, 24, 3), 40, np.uint8), np.full((9, 12, 3), 100, np.uint8)
    write_image(tmp_path / "in" / "a.png", a)
    write_image(tmp_path / "in" / "b.png", b)
    r = _client([tmp_path / "in", "-o", tmp_path / "out", "--model", "inv", "--json", tmp_path / "r.json"],
                _GarbageServer, monkeypatch)
    assert r.exit_code == 2, r.output
    assert "error:" in r.output and "a.png" in _text(r), r.output
    assert not (tmp_path / "out" / "a.png").exists()
    np.testing.assert_array_equal(read_image(tmp_path / "out" / "b.png"), 255 - b)
    assert [i["status"] for i in json.loads((tmp_path / "r.json").read_text())["images"]] == ["error", "ok"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b.png"]


def _network_json(**change):
    x, y = tc.TensorSpec("input", "TYPE_FP32", [-1, 3, -1, -1]), tc.TensorSpec("output", "TYPE_FP32", [-1, 3, -1, -1])
    cfg = _server_json(tc.network_config("bad", "onnxruntime", [x], [y], {**META, "scale": "1"}, 4))
    for key, value in change.items():
        cfg[key] = value
    return cfg


def _first(role, **change):
    cfg = _network_json()
    return {role: [{**cfg[role][0], **change}]}


BAD_CONFIGS = {
    "a list": ([], "not a JSON object"),
    "a string": ("config", "not a JSON object"),
    "wrapped string": ({"config": "x"}, "not a JSON object"),
    "no input": (_network_json(input=[]), "config has no input"),
    "no output": (_network_json(output=None), "config has no output"),
    "input not a list": (_network_json(input={"name": "input"}), "config has no input"),
    "input strings": (_network_json(input=["input"]), "config has no input"),
    "input without name": (_network_json(**_first("input", name=None)), "input has no name"),
    "output without name": (_network_json(output=[{"data_type": "TYPE_FP32", "dims": [3, -1, -1]}]), "output has no name"),
    "odd input dtype": (_network_json(**_first("input", data_type="TYPE_STRING")), "TYPE_STRING"),
    "dtype not a string": (_network_json(**_first("input", data_type=7)), "data type 7"),
    "odd output dtype": (_network_json(**_first("output", data_type="TYPE_INT64")), "TYPE_INT64"),
    "3-D input": (_network_json(**_first("input", dims=[-1, -1])), "dims"),
    "dims not numbers": (_network_json(**_first("input", dims=["a", -1, -1])), "dims"),
    "dims missing": (_network_json(**_first("output", dims=None)), "dims"),
    "channels disagree": (_network_json(**_first("input", dims=[1, -1, -1])), "channels"),
    "parameters a list": (_network_json(parameters=[1]), "parameters"),
    "parameter not a dict": (_network_json(parameters={**_network_json()["parameters"], "scale": "2"}), "scale"),
    "parameter not a number": (_network_json(parameters={**_network_json()["parameters"],
                                                         "pad_multiple": {"string_value": "eight"}}), "pad_multiple"),
    "zero scale": (_network_json(parameters={**_network_json()["parameters"], "scale": {"string_value": "0"}}), "scale"),
    "max_batch_size text": (_network_json(max_batch_size="many"), "max_batch_size"),
}


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_malformed_server_config_is_one_error(tmp_path, monkeypatch, name):
    """Issue 16: a malformed config from the server gave AttributeError/ValueError tracebacks."""
    config, words = BAD_CONFIGS[name]

    class Server(_FakeServer):
        def get_model_config(self, model):
            return config

    write_image(tmp_path / "a.png", np.zeros((9, 12, 3), np.uint8))
    r = _client([tmp_path / "a.png", "-o", tmp_path / "out", "--model", "bad"], Server, monkeypatch)
    assert r.exit_code == 2, r.output
    assert "error: server model 'bad'" in _text(r) and words in _text(r), r.output
    assert not (tmp_path / "out").exists()


def test_two_inputs_with_one_name_write_one_output(tmp_path, monkeypatch):
    for folder, value in (("x", 10), ("y", 20)):
        (tmp_path / folder).mkdir()
        write_image(tmp_path / folder / "a.png", np.full((9, 12, 3), value, np.uint8))
    r = _client([tmp_path / "x", tmp_path / "y", "-o", tmp_path / "out", "--model", "inv", "--overwrite"],
                monkeypatch=monkeypatch)
    assert r.exit_code == 2 and "same file name" in _text(r), r.output
    np.testing.assert_array_equal(read_image(tmp_path / "out" / "a.png"), np.full((9, 12, 3), 245, np.uint8))
