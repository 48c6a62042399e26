"""restore-export --format triton-repo, the Python pre/post models, the release check and restore-client's
request/response encoding, without a Triton server: configs are parsed with Triton's own
model_config.proto (tritonclient) and checked against the exported ONNX files."""

import importlib.util
import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from restormer_deploy.cli.export import app
from restormer_deploy.engines.tensorrt import core
from restormer_deploy.engines.triton import processing
from restormer_deploy.export import contract
from restormer_deploy.restormer.fileio import sha256_file

mc = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="needs tritonclient[grpc,http] (pip install '.[triton]')")
from google.protobuf import json_format, text_format  # noqa: E402  (installed with tritonclient)

runner = CliRunner()
ONNX_TYPE = {onnx.TensorProto.FLOAT: mc.TYPE_FP32, onnx.TensorProto.FLOAT16: mc.TYPE_FP16}


def _export(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _text(result) -> str:
    return " ".join(result.output.split())


def _config(path: Path):
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _check_against_onnx(cfg, onnx_path: Path, batching: bool):
    """Every config input/output is an ONNX graph input/output of the same dtype and shape (-1 where dynamic)."""
    model = onnx.load(str(onnx_path))
    for config_io, graph_io in ((cfg.input, model.graph.input), (cfg.output, model.graph.output)):
        assert [t.name for t in config_io] == [v.name for v in graph_io]
        for t, v in zip(config_io, graph_io):
            tt = v.type.tensor_type
            shape = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
            assert t.data_type == ONNX_TYPE[tt.elem_type]
            assert list(t.dims) == (shape[1:] if batching else shape)
            assert len(shape) == 4 and shape[0] == shape[2] == shape[3] == -1  # batch, height, width dynamic


def _ensemble_consistent(repo: Path, ensemble: str):
    """Each ensemble tensor has one dtype and compatible shapes at every step that produces or reads it."""
    cfg = _config(repo / ensemble / "config.pbtxt")
    seen = {t.name: (t.data_type, list(t.dims)) for t in cfg.input}
    for step in cfg.ensemble_scheduling.step:
        model = _config(repo / step.model_name / "config.pbtxt")
        ins, outs = {t.name: t for t in model.input}, {t.name: t for t in model.output}
        for key, tensor in step.input_map.items():
            dtype, dims = seen[tensor]
            assert ins[key].data_type == dtype, (step.model_name, key)
            assert len(ins[key].dims) == len(dims) and all(a == b or -1 in (a, b) for a, b in zip(ins[key].dims, dims))
        for key, tensor in step.output_map.items():
            seen[tensor] = (outs[key].data_type, list(outs[key].dims))
    for t in cfg.output:
        assert seen[t.name][0] == t.data_type


def test_onnxruntime_repository_with_preprocess(art, tmp_path):
    repo = tmp_path / "repo"
    r = _export(art["fp32"], "--format", "triton-repo", "--backend", "onnxruntime", "--with-preprocess",
                "--instances", "2", "--instance-kind", "cpu", "--out", repo, "--json", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    name = art["spec"].name
    assert sorted(p.name for p in repo.iterdir()) == sorted([name, f"{name}_pre", f"{name}_post", f"{name}_image"])
    cfg = _config(repo / name / "config.pbtxt")
    assert (cfg.name, cfg.platform, cfg.backend, cfg.max_batch_size) == (name, "onnxruntime_onnx", "onnxruntime", 8)
    assert cfg.HasField("dynamic_batching")
    assert [(g.count, g.kind) for g in cfg.instance_group] == [(2, mc.ModelInstanceGroup.KIND_CPU)]
    assert (repo / name / "1" / "model.onnx").read_bytes() == Path(art["fp32"]).read_bytes()
    _check_against_onnx(cfg, art["fp32"], batching=True)
    meta = {p.key: p.value for p in onnx.load(str(art["fp32"])).metadata_props}
    assert {k: v.string_value for k, v in cfg.parameters.items()} == meta
    for role in ("pre", "post"):
        py = _config(repo / f"{name}_{role}" / "config.pbtxt")
        assert py.backend == "python" and py.parameters["role"].string_value == role
        assert (repo / f"{name}_{role}" / "1" / "processing.py").read_text() == Path(processing.__file__).read_text()
    ens = _config(repo / f"{name}_image" / "config.pbtxt")
    assert ens.platform == "ensemble" and ens.input[0].data_type == mc.TYPE_UINT8 and (repo / f"{name}_image" / "1").is_dir()
    _ensemble_consistent(repo, f"{name}_image")
    assert "restore-client" in (repo / name / "README.md").read_text()
    assert json.loads((tmp_path / "r.json").read_text())["models"][0] == name
    assert _leftovers(tmp_path) == []


def test_no_batching_and_fp16_io(art, tmp_path):
    repo = tmp_path / "repo"
    r = _export(art["fp16"], "--format", "triton-repo", "--backend", "onnxruntime", "--max-batch-size", "0",
                "--with-preprocess", "--model-name", "den16", "--out", repo)
    assert r.exit_code == 0, r.output
    cfg = _config(repo / "den16" / "config.pbtxt")
    assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")
    _check_against_onnx(cfg, art["fp16"], batching=False)
    pre = _config(repo / "den16_pre" / "config.pbtxt")
    assert {t.name: t.data_type for t in pre.output}["INPUT"] == mc.TYPE_FP16
    _ensemble_consistent(repo, "den16_image")


# ----------------------------------------------------------------- Python models, in-process


def _fake_pb_utils():
    class Tensor:
        def __init__(self, name, array):
            self.name, self.array = name, array

        def as_numpy(self):
            return self.array

    class Response:
        def __init__(self, output_tensors, error=None):
            self.tensors, self.error = {t.name: t.array for t in output_tensors}, error

    pb = types.ModuleType("triton_python_backend_utils")
    pb.Tensor, pb.InferenceResponse, pb.TritonError = Tensor, Response, str
    pb.get_input_tensor_by_name = lambda request, name: request.get(name)
    pb.get_output_config_by_name = lambda config, name: next(o for o in config["output"] if o["name"] == name)
    pb.triton_string_to_numpy = {"TYPE_FP32": np.float32, "TYPE_FP16": np.float16}.__getitem__
    return pb, Tensor


def _load_python_model(folder: Path, monkeypatch):
    pb, tensor = _fake_pb_utils()
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "processing", raising=False)
    spec = importlib.util.spec_from_file_location(f"triton_model_{folder.parent.name}", folder / "1" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = json_format.MessageToDict(_config(folder / "config.pbtxt"), preserving_proto_field_name=True)
    model = module.TritonPythonModel()
    model.initialize({"model_config": json.dumps(config)})
    return model, tensor


def test_python_models_match_restore_run(art, tmp_path, monkeypatch):
    from restormer_deploy.engines.restorer import _grey, _to_uint
    from restormer_deploy.engines.backends import load_runner
    from restormer_deploy.restormer.tiling import restore_array

    repo = tmp_path / "repo"
    assert _export(art["fp32"], "--format", "triton-repo", "--backend", "onnxruntime", "--with-preprocess",
                   "--model-name", "m", "--out", repo).exit_code == 0
    pre, tensor = _load_python_model(repo / "m_pre", monkeypatch)
    post, _ = _load_python_model(repo / "m_post", monkeypatch)
    g = np.random.default_rng(3)
    with load_runner(str(repo / "m" / "1" / "model.onnx"), "ort-cpu", threads=1) as net:
        for image in (g.integers(0, 256, (13, 11, 3), dtype=np.uint8), g.integers(0, 256, (20, 17, 1), dtype=np.uint8)):
            (resp,) = pre.execute([{"IMAGE": tensor("IMAGE", image[None])}])
            assert resp.error is None and resp.tensors["INPUT"].shape[2:] == tuple(max(n, 16) for n in image.shape[:2])  # min size 16
            y = net.run(resp.tensors["INPUT"])
            (resp,) = post.execute([{"OUTPUT": tensor("OUTPUT", y), "ORIGINAL_SHAPE": tensor("ORIGINAL_SHAPE", resp.tensors["ORIGINAL_SHAPE"])}])
            got = resp.tensors["IMAGE"][0]
            # restore-run's own path: grey conversion, restore_array's padding, rounding
            x = _grey(image).transpose(2, 0, 1).astype(np.float32) / np.float32(255)
            want = _to_uint(restore_array(net.run, net.spec, x), np.uint8)
            assert got.shape == want.shape == (*image.shape[:2], 1)
            assert np.abs(got.astype(int) - want).max() <= 1
        (bad,) = pre.execute([{"IMAGE": tensor("IMAGE", np.zeros((1, 4, 4, 2), np.uint8))}])
        assert "1 or 3 channels" in bad.error


def test_processing_padding_and_channels_follow_the_project():
    from restormer_deploy.restormer.tiling import DEFAULT_MIN_SIZE, pad_reflect, padded_size
    from restormer_deploy.restormer.imageio import to_tensor

    assert processing.MIN_SIZE == DEFAULT_MIN_SIZE
    img = np.random.default_rng(0).integers(0, 65536, (21, 9, 3), dtype=np.uint16)
    x, shape = processing.preprocess(img, 3, pad_multiple=8)
    ref = to_tensor(img).numpy()
    np.testing.assert_array_equal(x, pad_reflect(ref, padded_size(21, 8, 16), padded_size(9, 8, 16)))
    assert x.shape == (1, 3, 24, 16) and shape.tolist() == [[21, 9, 3]]
    # identity network at scale 2 (nearest upsampling) comes back as the upsampled image, exactly
    y = np.repeat(np.repeat(x, 2, 2), 2, 3)
    np.testing.assert_array_equal(processing.postprocess(y, shape, 2, np.uint16)[0], np.repeat(np.repeat(img, 2, 0), 2, 1))
    grey = processing.to_channels(img[..., :3].astype(np.uint8), 1)
    assert grey.shape == (21, 9, 1)


# ----------------------------------------------------------------- TensorRT plan route


def _fake_engine(art, folder: Path, version="10.8.0.43", plugin="ab" * 32, batch=4) -> Path:
    folder.mkdir()
    onnx_path = folder / "m.onnx"
    shutil.copyfile(art["fp32"], onnx_path)
    engine = folder / "m.engine"
    engine.write_bytes(b"not a real plan" * 8)
    meta = core.onnx_metadata(onnx.load(str(onnx_path)))
    profile = {"input": {"min": [1, 1, 16, 16], "opt": [batch, 1, 64, 64], "max": [batch, 1, 256, 256]}}
    core.write_sidecar(engine, core.build_sidecar(meta, version, "Fake GPU", "8.9", profile, plugin_sha256=plugin,
                                                  onnx_sha256=sha256_file(onnx_path)))
    return engine


def test_plan_repository_from_a_built_engine(art, tmp_path):
    engine = _fake_engine(art, tmp_path / "e")
    repo = tmp_path / "repo"
    r = _export(engine, "--format", "triton-repo", "--triton-release", "25.01", "--model-name", "den", "--out", repo)
    assert r.exit_code == 0, r.output
    cfg = _config(repo / "den" / "config.pbtxt")
    assert (cfg.platform, cfg.backend, cfg.default_model_filename) == ("tensorrt_plan", "tensorrt", "model.plan")
    assert cfg.max_batch_size == 4  # the engine profile's batch
    assert [g.kind for g in cfg.instance_group] == [mc.ModelInstanceGroup.KIND_GPU]
    _check_against_onnx(cfg, tmp_path / "e" / "m.onnx", batching=True)
    assert (repo / "den" / "1" / "model.plan").read_bytes() == engine.read_bytes()
    assert contract.read_sidecar(repo / "den" / "1" / "model.plan")["tensorrt_version"] == "10.8.0.43"
    readme = " ".join((repo / "den" / "README.md").read_text().split())
    for words in ("TensorRT 10.8.0.43", "Triton 25.01, 25.02", "tritonserver:25.01-py3", "LD_PRELOAD=",
                  "--backend-config=tensorrt,plugins=", "CONVERSE2D_REGISTER_ON_LOAD=ON", "ab" * 32, "from knowledge"):
        assert words in readme, words


def test_plan_for_a_mismatched_triton_release_is_refused(art, tmp_path):
    engine = _fake_engine(art, tmp_path / "e")
    r = _export(engine, "--format", "triton-repo", "--triton-release", "24.12", "--out", tmp_path / "repo")
    assert r.exit_code == 2
    assert "built with TensorRT 10.8.0.43" in _text(r) and "runs TensorRT 10.7.0.23" in _text(r) and "25.01" in _text(r)
    assert not (tmp_path / "repo").exists() and _leftovers(tmp_path) == []
    r = _export(engine, "--format", "triton-repo", "--triton-release", "26.13", "--out", tmp_path / "repo")
    assert r.exit_code == 2 and "not in the table" in _text(r)
    r = _export(engine, "--format", "triton-repo", "--max-batch-size", "16", "--out", tmp_path / "repo")
    assert r.exit_code == 2 and "exceeds the engine's profile (batch <= 4)" in _text(r)
    assert not (tmp_path / "repo").exists() and _leftovers(tmp_path) == []


def test_plan_route_needs_the_engines_own_onnx_and_sidecar(art, tmp_path):
    engine = _fake_engine(art, tmp_path / "e")
    shutil.copyfile(art["fp16"], tmp_path / "e" / "m.onnx")  # not the file the engine was built from
    r = _export(engine, "--format", "triton-repo", "--out", tmp_path / "repo")
    assert r.exit_code == 2 and "sha256 differs" in _text(r)
    (tmp_path / "e" / "m.engine.json").unlink()
    r = _export(engine, "--format", "triton-repo", "--out", tmp_path / "repo")
    assert r.exit_code == 2 and "no sidecar" in _text(r)
    r = _export(engine, "--format", "triton-repo", "--backend", "onnxruntime", "--out", tmp_path / "repo")
    assert r.exit_code == 2 and "needs --backend tensorrt" in _text(r)
    assert not (tmp_path / "repo").exists() and _leftovers(tmp_path) == []


def test_plan_route_from_onnx_without_tensorrt_is_one_error(art, tmp_path):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here")
    except Exception:
        pass
    r = _export(art["fp32"], "--format", "triton-repo", "--backend", "tensorrt", "--tile", "64", "--out", tmp_path / "repo")
    assert r.exit_code == 2 and "TensorRT is not usable here" in _text(r) and not (tmp_path / "repo").exists()
    assert "--backend onnxruntime" in _text(r)


# ----------------------------------------------------------------- bad input


def _tiny_onnx(path: Path, shape, elem=onnx.TensorProto.FLOAT):
    h = onnx.helper
    graph = h.make_graph([h.make_node("Identity", ["x"], ["y"])], "g",
                         [h.make_tensor_value_info("x", elem, shape)], [h.make_tensor_value_info("y", elem, shape)])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 20)])
    for k, v in {"in_channels": "3", "out_channels": "3", "scale": "1", "pad_multiple": "1", "preset": "tiny"}.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("shape, elem, words", [
    (["N", 3, "H"], onnx.TensorProto.FLOAT, "4-D NCHW"),
    (["N", 3, "H", "W"], onnx.TensorProto.INT64, "TYPE_INT64: expected float32 or float16"),
    (["N", "C", "H", "W"], onnx.TensorProto.FLOAT, "fixed channel count"),
    ([1, 3, "H", "W"], onnx.TensorProto.FLOAT, "fixed batch axis"),
])
def test_onnx_that_does_not_fit_is_refused(tmp_path, shape, elem, words):
    model = _tiny_onnx(tmp_path / "tiny.onnx", shape, elem)
    r = _export(model, "--format", "triton-repo", "--backend", "onnxruntime", "--out", tmp_path / "repo")
    assert r.exit_code == 2 and words in _text(r), r.output
    assert not (tmp_path / "repo").exists() and _leftovers(tmp_path) == []  # nothing partial left


def test_existing_repository_needs_overwrite(art, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "keep.txt").write_text("x")
    r = _export(art["fp32"], "--format", "triton-repo", "--backend", "onnxruntime", "--out", repo)
    assert r.exit_code == 2 and "is not empty: pass --overwrite" in _text(r)
    assert sorted(p.name for p in repo.iterdir()) == ["keep.txt"]
    r = _export(art["fp32"], "--format", "triton-repo", "--backend", "onnxruntime", "--overwrite", "--model-name", "m", "--out", repo)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in repo.iterdir()) == ["m"] and _leftovers(tmp_path) == []


@pytest.mark.parametrize("args, words", [
    (["--backend", "tvm"], "choose tensorrt"),
    (["--backend", "tensorrt", "--instance-kind", "cpu"], "GPU only"),
    (["--backend", "onnxruntime", "--instances", "0"], "at least 1"),
    (["--backend", "onnxruntime", "--triton-release", "25.01"], "needs --backend tensorrt"),
    (["--backend", "onnxruntime", "--model-name", "a/b"], "letters, digits"),
])
def test_bad_options_exit_2(art, tmp_path, args, words):
    r = _export(art["fp32"], "--format", "triton-repo", *args, "--out", tmp_path / "repo")
    assert r.exit_code == 2 and words in _text(r), r.output


def test_help_teaches_the_format():
    r = runner.invoke(app, ["--help"], terminal_width=200)
    assert "--format triton-repo" in r.output and "--with-preprocess" in r.output and "--triton-release" in r.output


def test_release_table():
    from restormer_deploy.engines.triton.releases import TRITON_RELEASES, check_plan_release, releases_for

    assert releases_for("10.13.3.9") == ["25.09", "25.10"] and releases_for("10.2.0") == []
    assert all(contract.parse_version(trt)[:2] >= core.MIN_VERSION for _, trt in TRITON_RELEASES.values())
    check_plan_release("10.3.0.26", "24.08")
    with pytest.raises(ValueError, match="no release in the table"):
        check_plan_release("10.12.0.1", "25.08")


@pytest.mark.parametrize("preset", ["..", ".", "../evil", "/abs"])
def test_model_name_from_a_file_never_leaves_out(art, tmp_path, preset):
    """Issue 16.1: a file whose 'preset' metadata is '..' must not write into the parent of --out."""
    model = onnx.load(str(art["fp32"]))
    for p in model.metadata_props:
        if p.key == "preset":
            p.value = preset
    bad = tmp_path / "in" / "m.onnx"
    bad.parent.mkdir()
    onnx.save(model, str(bad))
    out = tmp_path / "work" / "repo"
    out.parent.mkdir()
    (out.parent / "README.md").write_text("mine")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    r = runner.invoke(app, [str(bad), "--format", "triton-repo", "--backend", "onnxruntime", "--out", str(out)])
    assert (out.parent / "README.md").read_text() == "mine"
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing written anywhere
    assert r.exit_code == 2 and "--model-name" in r.output, r.output


def test_repository_modes_follow_the_umask(art, tmp_path):
    """Issue 16.3: mkdtemp made the repository 0700 (unreadable to the server's user)."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        repo = tmp_path / "repo"
        r = _export(art["fp32"], "--format", "triton-repo", "--backend", "onnxruntime", "--out", repo)
        assert r.exit_code == 0, r.output
    finally:
        os.umask(old)
    modes = {p.relative_to(tmp_path): stat.S_IMODE(p.stat().st_mode) for p in [repo, *repo.rglob("*")]}
    assert all(m == (0o755 if (tmp_path / p).is_dir() else 0o644) for p, m in modes.items()), modes


# ----------------------------------------------------------------- issue 16: what an export packages is checked

W = (np.arange(3, dtype=np.float32) / 10).reshape(1, 3, 1, 1)


def _onnx_with_data(folder: Path, location="weights/w.bin") -> Path:
    """``folder/m.onnx`` computing x + W, W stored in the external file ``location``."""
    h = onnx.helper
    shape = ["N", 3, "H", "W"]
    graph = h.make_graph([h.make_node("Add", ["x", "w"], ["y"])], "g",
                         [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, shape)],
                         [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, shape)],
                         initializer=[onnx.numpy_helper.from_array(W, "w")])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 20)], ir_version=10)
    for k, v in {"in_channels": "3", "out_channels": "3", "scale": "1", "pad_multiple": "1", "preset": "ext"}.items():
        model.metadata_props.add(key=k, value=v)
    (folder / "weights").mkdir(parents=True)
    onnx.save_model(model, str(folder / "m.onnx"), save_as_external_data=True, location=location, size_threshold=0)
    return folder / "m.onnx"


def _relocate(onnx_path: Path, location: str) -> None:
    model = onnx.load(str(onnx_path), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = location
    onnx.save(model, str(onnx_path))


def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


def test_onnx_external_data_travels_with_the_model(tmp_path):
    """Issue 16: model.onnx was copied without its external data file (the repository could not load)."""
    import onnxruntime as ort

    src = _onnx_with_data(tmp_path / "m")
    (tmp_path / "m" / "unrelated.bin").write_bytes(b"not referenced")
    repo = tmp_path / "repo"
    r = _export(src, "--format", "triton-repo", "--backend", "onnxruntime", "--model-name", "ext", "--out", repo)
    assert r.exit_code == 0, r.output
    version = repo / "ext" / "1"
    assert sorted(str(p.relative_to(version)) for p in version.rglob("*") if p.is_file()) == \
        ["model.onnx", "weights/w.bin"]  # only what the model references
    x = np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32)
    y = ort.InferenceSession(str(version / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, x + W)


@pytest.mark.parametrize("how, words", [
    ("absolute", "outside"), ("dotdot", "outside"), ("symlink", "outside"), ("missing", "not found"),
    ("short", "shorter"), ("collides", "model.onnx"),
])
def test_onnx_external_data_outside_its_folder_is_refused(tmp_path, how, words):
    """Issue 16: external data pointing outside the model's folder was packaged as is."""
    src = _onnx_with_data(tmp_path / "m", location="w.bin")
    outside = tmp_path / "outside.bin"
    shutil.copyfile(tmp_path / "m" / "w.bin", outside)
    if how == "absolute":
        _relocate(src, str(outside))
    elif how == "dotdot":
        _relocate(src, "../outside.bin")
    elif how == "symlink":
        (tmp_path / "m" / "w.bin").unlink()
        (tmp_path / "m" / "w.bin").symlink_to(outside)
    elif how == "missing":
        _relocate(src, "nope.bin")
    elif how == "short":
        (tmp_path / "m" / "w.bin").write_bytes(b"\0")
    else:
        _relocate(src, "model.onnx")
        shutil.copyfile(outside, tmp_path / "m" / "model.onnx")
    before = _tree(tmp_path)
    r = _export(src, "--format", "triton-repo", "--backend", "onnxruntime", "--out", tmp_path / "repo")
    assert r.exit_code == 2 and "error:" in r.output and str(src) in _text(r) and words in _text(r), r.output
    assert _tree(tmp_path) == before  # nothing written, nothing changed


def _edit_sidecar(engine: Path, text: str | bytes | None = None, **change) -> None:
    path = contract.sidecar_path(engine)
    if text is None:
        text = json.dumps({**json.loads(path.read_text()), **change})
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


@pytest.mark.parametrize("edit, words", [
    ({"onnx_sha256": ""}, "onnx_sha256"),
    ({"onnx_sha256": None}, "onnx_sha256"),
    ({"onnx_sha256": "ab" * 32}, "sha256 differs"),
    ({"plugin_sha256": 5}, "plugin_sha256"),
    ({"profile": {"input": None}}, "profile"),
    ({"profile": {"input": {"min": [1], "opt": [1], "max": []}}}, "profile"),
    ({"profile": []}, "profile"),
    ({"tensorrt_version": "banana"}, "TensorRT version"),
    ("42", "not a JSON object"),
    ("[1, 2]", "not a JSON object"),
    (b"\xff\xfe\x00garbage", "not valid JSON"),
    ("{", "not valid JSON"),
])
def test_engine_sidecar_must_vouch_for_the_plan(art, tmp_path, edit, words):
    """Issue 16: a made-up sidecar (an empty onnx_sha256 skipped the check) was packaged, or a traceback."""
    engine = _fake_engine(art, tmp_path / "e", plugin="")
    _edit_sidecar(engine, **edit) if isinstance(edit, dict) else _edit_sidecar(engine, edit)
    before = _tree(tmp_path)
    r = _export(engine, "--format", "triton-repo", "--out", tmp_path / "repo")
    assert r.exit_code == 2 and "error:" in r.output and words in _text(r), r.output
    assert _tree(tmp_path) == before


def test_plan_not_deserialised_is_said(art, tmp_path):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here")
    except Exception:
        pass
    engine = _fake_engine(art, tmp_path / "e")
    r = _export(engine, "--format", "triton-repo", "--model-name", "den", "--out", tmp_path / "repo", "--json", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    readme = " ".join((tmp_path / "repo" / "den" / "README.md").read_text().split())
    assert "not deserialised" in readme and "TensorRT is not usable here" in readme
    assert any("not deserialised" in n for n in json.loads((tmp_path / "r.json").read_text())["notes"])


@pytest.mark.parametrize("loads", [False, True])
def test_plan_is_deserialised_when_tensorrt_can(art, tmp_path, monkeypatch, loads):
    """With TensorRT of the plan's version and a GPU (faked here), a plan TensorRT rejects is refused."""
    from restormer_deploy.engines.tensorrt import builder

    runtime = types.SimpleNamespace(deserialize_cuda_engine=lambda data: object() if loads else None)
    trt = types.SimpleNamespace(__version__="10.8.0.43", Logger=types.SimpleNamespace(WARNING=2, __call__=None),
                                Runtime=lambda logger: runtime, get_plugin_registry=lambda: None)
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    monkeypatch.setattr(builder, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(builder, "gpu_info", lambda device=0: ("Fake GPU", "8.9"))
    engine = _fake_engine(art, tmp_path / "e", plugin="")
    r = _export(engine, "--format", "triton-repo", "--model-name", "den", "--out", tmp_path / "repo")
    if loads:
        assert r.exit_code == 0, r.output
        assert "deserialised with TensorRT 10.8.0.43" in " ".join((tmp_path / "repo" / "den" / "README.md").read_text().split())
    else:
        assert r.exit_code == 2 and "could not deserialise" in _text(r) and str(engine) in _text(r), r.output
        assert not (tmp_path / "repo").exists() and _leftovers(tmp_path) == []
