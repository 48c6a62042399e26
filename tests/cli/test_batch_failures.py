"""Issue 16.2/16.4/16.11: one item's failure never takes down a batch or writes over anything.

- ONNX Runtime's exceptions (Fail, InvalidArgument, ...: plain Exceptions) fail that image, the rest
  is processed, the summary and JSON are written, exit 2 (restore-run); restore-bench keeps the
  other artefacts' rows; restore-parity reports one line.
- --degrade writes NAME_degraded.EXT under the same skip/overwrite rule as the result, and no two
  outputs (or an output and an input) collide: an input named x_degraded.png is refused, not skipped.
- restore-parity skips an unreadable image (one line, exit 2 at the end) instead of stopping.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper
from typer.testing import CliRunner

from restormer_deploy.restormer.imageio import write_image

runner = CliRunner()

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fixed_onnx(tmp_path_factory, art):
    """The small Converse-DnCNN export with its input pinned to 1x1x32x32: any other size makes
    ONNX Runtime raise (InvalidArgument), as a fixed-size file given a 65x70 photo does."""
    model = onnx.load(str(art["fp32"]))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for d, v in zip(dims, (1, 1, 32, 32)):
        d.ClearField("dim_param")
        d.dim_value = v
    path = tmp_path_factory.mktemp("fixed") / "fixed.onnx"
    onnx.save(model, str(path))
    return path


def test_onnx_runtime_error_fails_one_image_not_the_batch(fixed_onnx, tmp_path, random_image):
    from restormer_deploy.cli.run import app

    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "a_bad.png", random_image((40, 44)))  # not 32x32: ONNX Runtime refuses it
    write_image(src / "b_good.png", random_image((32, 32)))
    out = tmp_path / "out"
    r = runner.invoke(app, [str(fixed_onnx), str(src), "-o", str(out), "--json", str(tmp_path / "r.json"),
                            "--backend", "ort-cpu"])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and "a_bad.png" in r.output
    assert (out / "b_good.png").is_file() and not (out / "a_bad.png").exists()
    report = json.loads((tmp_path / "r.json").read_text())
    status = {Path(i["input"]).name: i["status"] for i in report["images"]}
    assert status == {"a_bad.png": "error", "b_good.png": "ok"}


def test_bench_keeps_the_other_artefacts(fixed_onnx, art, tmp_path):
    from restormer_deploy.cli.bench import app

    r = runner.invoke(app, [str(fixed_onnx), str(art["fp32"]), "--size", "40x40", "--iters", "1", "--warmup", "0",
                            "--json", str(tmp_path / "b.json")])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and "fixed.onnx" in r.output
    data = json.loads((tmp_path / "b.json").read_text())
    assert len(data["rows"]) == 1 and data["errors"][0]["artifact"] == str(fixed_onnx)


def test_runner_start_failure_is_one_backend_error(tmp_path):
    """An unknown custom op: ONNX Runtime refuses the session; that is a BackendError, not a traceback."""
    from restormer_deploy.engines.backends import BackendError, OnnxRuntimeRunner

    node = helper.make_node("Mystery", ["input"], ["output"], domain="acme")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, 8, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid("acme", 1)])
    for key, value in {"architecture": "converse-dncnn", "preset": "converse-dncnn", "in_channels": "1",
                       "out_channels": "1", "scale": "1", "pad_multiple": "1", "precision": "fp32", "task": "denoise",
                       "value_range": "0,1"}.items():
        model.metadata_props.add(key=key, value=value)
    path = tmp_path / "mystery.onnx"
    onnx.save(model, str(path))
    with pytest.raises(BackendError, match="cannot start"):
        OnnxRuntimeRunner(path).activate()


def test_degraded_outputs_follow_the_skip_rule_and_never_collide(art, tmp_path, random_image):
    from restormer_deploy.cli.run import app

    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "x.png", random_image((24, 24)))
    write_image(src / "x_degraded.png", random_image((24, 24), seed=1))  # would be x.png's degraded output
    out = tmp_path / "out"
    out.mkdir()
    args = [str(art["ckpt"]), str(src), "-o", str(out), "--degrade", "noise:25", "--json", str(tmp_path / "r.json")]
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and "x_degraded.png is already written for x.png" in r.output, r.output
    items = {Path(i["input"]).name: i for i in json.loads((tmp_path / "r.json").read_text())["images"]}
    assert items["x.png"]["status"] == "ok" and items["x_degraded.png"]["status"] == "error"

    # a second run: the degraded file exists too, so nothing is rewritten without --overwrite
    (src / "x_degraded.png").unlink()
    degraded = (out / "x_degraded.png").read_bytes()
    (out / "x.png").unlink()
    r = runner.invoke(app, args)
    assert r.exit_code == 0 and (out / "x_degraded.png").read_bytes() == degraded, r.output
    assert not (out / "x.png").exists() and "x_degraded.png" in r.output  # skipped, named


def test_parity_skips_an_unreadable_image(art, tmp_path, random_image):
    from restormer_deploy.cli.parity import app

    src = tmp_path / "in"
    src.mkdir()
    (src / "a_broken.png").write_bytes(b"not a png")
    write_image(src / "b.png", random_image((32, 32)))
    write_image(src / "c.png", random_image((32, 32), seed=2))
    r = runner.invoke(app, [str(art["fp32"]), "--reference", str(art["ckpt"]), "--images", str(src), "--degrade", "noise:10",
                            "--json", str(tmp_path / "p.json")])
    assert r.exit_code == 2, r.output
    assert "a_broken.png" in r.output and "Traceback" not in r.output and "PASSED" in r.output
    data = json.loads((tmp_path / "p.json").read_text())
    assert [i["name"] for i in data["images"]] == ["b.png", "c.png"] and len(data["unreadable"]) == 1


def test_export_and_demo_refuse_bad_outputs_with_one_line(tmp_path):
    from restormer_deploy.cli.demo import app as demo
    from restormer_deploy.cli.export import app as export
    from restormer_deploy.export.onnx_export import newest_opset

    folder = tmp_path / "a_folder.onnx"
    folder.mkdir()
    r = runner.invoke(export, ["converse-dncnn", "--out", str(folder)])
    assert r.exit_code == 2 and "it is a folder" in r.output and "Traceback" not in r.output, r.output
    r = runner.invoke(export, ["converse-dncnn", "--out", str(tmp_path / "m.onnx"), "--opset", "99"])
    assert r.exit_code == 2 and f"to {newest_opset()}" in r.output and not (tmp_path / "m.onnx").exists(), r.output
    a_file = tmp_path / "plain"
    a_file.write_text("x")
    r = runner.invoke(demo, ["--out", str(a_file)])
    assert r.exit_code == 2 and "cannot use" in r.output and a_file.read_text() == "x", r.output


def test_eval_refuses_a_nan_floor(tmp_path, random_image):
    from restormer_deploy.cli.eval import app

    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "a.png", random_image((16, 16)))
    r = runner.invoke(app, ["converse-dncnn", "--data", str(src), "--degrade", "noise:25", "--min-psnr", "nan"])
    assert r.exit_code == 2 and "--min-psnr must be a finite" in r.output, r.output


def test_info_does_not_claim_a_runtime_restore_run_refuses(tmp_path):
    from restormer_deploy.cli.info import app

    node = helper.make_node("Mystery", ["input"], ["output"], domain="acme")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, 8, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid("acme", 1)])
    model.functions.append(helper.make_function("acme", "Mystery", ["input"], ["output"],
                                                [helper.make_node("Unknown", ["input"], ["output"], domain="acme2")],
                                                [helper.make_opsetid("", 20), helper.make_opsetid("acme2", 1)]))
    for key, value in {"architecture": "converse-dncnn", "preset": "converse-dncnn", "in_channels": "1",
                       "out_channels": "1", "scale": "1", "pad_multiple": "1", "precision": "fp32", "task": "denoise",
                       "value_range": "0,1", "tool_version": "0", "source_sha256": ""}.items():
        model.metadata_props.add(key=key, value=value)
    path = tmp_path / "mystery.onnx"
    onnx.save(model, str(path))
    r = runner.invoke(app, [str(path)])
    assert r.exit_code == 1 and "runs on: nothing" in r.output and "ONNX Runtime cannot run it" in r.output, r.output


def test_run_keeps_icc_profiles_and_takes_max_pixels(tmp_path, small_checkpoint, random_image):
    from PIL import Image, ImageCms

    from restormer_deploy.cli.run import app
    from restormer_deploy.restormer.imageio import read_icc_profile

    colour_model = small_checkpoint(tmp_path, "restormer-denoise-color")[0]
    src = tmp_path / "in"
    src.mkdir()
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(random_image((24, 24, 3))).save(src / "a.png", icc_profile=icc)
    write_image(src / "b.png", random_image((30, 30, 3), seed=3))
    out = tmp_path / "out"
    r = runner.invoke(app, [str(colour_model), str(src), "-o", str(out), "--max-pixels", "600"])
    assert r.exit_code == 2 and "b.png" in r.output and "pixel limit" in r.output, r.output
    assert (out / "a.png").is_file() and not (out / "b.png").exists()
    assert read_icc_profile(out / "a.png") == read_icc_profile(src / "a.png") is not None
    from restormer_deploy.restormer.imageio import pixel_limit

    assert pixel_limit() >= 200_000_000  # the option is per run: nothing global is left behind
