"""restore-run: formats, bit depths, alpha, tiling, degrade demo, skip/overwrite, and one test per bad input."""

import functools
import json
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from typer.testing import CliRunner

from restormer_deploy.cli.run import app
from restormer_deploy.engines import backends
from restormer_deploy.restormer.imageio import read_image, read_image_alpha, write_image

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()


@pytest.fixture(scope="module")
def models(tmp_path_factory, small_checkpoint):
    """Small random grey (Converse-DnCNN) and colour (Restormer) checkpoints."""
    root = tmp_path_factory.mktemp("models")
    return {"grey": str(small_checkpoint(root, "converse-dncnn")[0]),
            "rgb": str(small_checkpoint(root, "restormer-denoise-color")[0])}


def _run(*args):
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    return result


def _leftovers(folder: Path):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.suffix == ".tmp")


def test_formats_depths_and_json(models, tmp_path, random_image):
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "g8.png", random_image((24, 30, 1)))
    write_image(src / "g16.png", random_image((20, 18, 1), np.uint16))
    write_image(src / "rgb.jpg", random_image((16, 16, 3)))
    write_image(src / "rgb.bmp", random_image((17, 19, 3)))
    write_image(src / "c16.tif", random_image((21, 22, 3), np.uint16))
    outdir = tmp_path / "out"
    r = _run(models["grey"], src, "-o", outdir, "--json", tmp_path / "r.json", "--threads", "1")
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert [Path(i["input"]).name for i in data["images"]] == ["c16.tif", "g16.png", "g8.png", "rgb.bmp", "rgb.jpg"]
    for item in data["images"]:
        assert set(item) >= {"input", "output", "status", "seconds"} and item["status"] == "ok"
        got, want = read_image(item["output"]), read_image(item["input"])
        assert got.dtype == want.dtype and got.shape[:2] == want.shape[:2]
        assert got.shape[2] == 1  # grey model: grey output
    assert _leftovers(outdir) == []


def test_rgba16_tiff_alpha_passes_through(models, tmp_path, random_image):
    src = tmp_path / "a.tif"
    colour, alpha = random_image((26, 23, 3), np.uint16, 1), random_image((26, 23, 1), np.uint16, 2)
    write_image(src, colour, alpha)
    r = _run(models["rgb"], src, "-o", tmp_path / "out")
    assert r.exit_code == 0, r.output
    got, got_alpha = read_image_alpha(tmp_path / "out" / "a.tif")
    assert got.dtype == np.uint16 and got.shape == colour.shape
    np.testing.assert_array_equal(got_alpha, alpha)


def test_exif_orientation_is_honoured(models, tmp_path, random_image):
    arr = random_image((10, 30, 1))
    im = Image.fromarray(arr[..., 0])
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    im.save(tmp_path / "e.jpg", exif=exif.tobytes())
    r = _run(models["grey"], tmp_path / "e.jpg", "-o", tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert read_image(tmp_path / "out" / "e.jpg").shape[:2] == (30, 10)


def test_tiled_equals_untiled_for_pointwise_model_and_glob(models, tmp_path, random_image):
    write_image(tmp_path / "x1.png", random_image((70, 90, 1)))
    write_image(tmp_path / "x2.png", random_image((70, 90, 1), seed=3))
    r1 = _run(models["grey"], str(tmp_path / "x*.png"), "-o", tmp_path / "o1")
    r2 = _run(models["grey"], str(tmp_path / "x*.png"), "-o", tmp_path / "o2", "--tile", "48", "--tile-overlap", "16", "--batch", "2")
    assert r1.exit_code == r2.exit_code == 0
    for name in ("x1.png", "x2.png"):
        a = read_image(tmp_path / "o1" / name).astype(int)
        b = read_image(tmp_path / "o2" / name).astype(int)
        assert np.abs(a - b).mean() < 2  # random weights: near-equal (exactness: tests/restormer/test_tiling.py)


def test_image_sized_memory_is_only_the_tiling_buffers(models, tmp_path, random_image):
    """Tiled restore-run of a 1024x1024 RGB image: the peak of numpy's buffers (traced by tracemalloc;
    the network's own memory is per tile) stays within 1.2x the float input + float accumulator +
    float weight sum. Holding the decoded image or converting through float temporaries costs ~1.8x."""
    import tracemalloc

    side = 1024
    write_image(tmp_path / "small.png", random_image((32, 32, 3)))
    write_image(tmp_path / "big.png", random_image((side, side, 3)))
    args = ["-o", tmp_path / "o", "--tile", "128", "--tile-overlap", "16", "--backend", "torch-cpu"]
    assert _run(models["rgb"], tmp_path / "small.png", *args).exit_code == 0  # imports and caches first
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        result = _run(models["rgb"], tmp_path / "big.png", *args)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0, result.output
    buffers = side * side * (3 * 4 + 3 * 4 + 4)
    assert peak <= 1.2 * buffers, f"{peak / 2**20:.1f} MB traced against {buffers / 2**20:.1f} MB of buffers"


def test_skip_existing_overwrite_and_never_overwrite_input(models, tmp_path, random_image):
    write_image(tmp_path / "a.png", random_image((16, 16, 1)))
    outdir = tmp_path / "out"
    assert _run(models["grey"], tmp_path / "a.png", "-o", outdir).exit_code == 0
    stamp = (outdir / "a.png").stat().st_mtime_ns
    r = _run(models["grey"], tmp_path / "a.png", "-o", outdir, "--json", tmp_path / "j.json")
    assert r.exit_code == 0 and json.loads((tmp_path / "j.json").read_text())["images"][0]["status"] == "skipped"
    assert (outdir / "a.png").stat().st_mtime_ns == stamp
    before = (tmp_path / "a.png").read_bytes()
    r = _run(models["grey"], tmp_path / "a.png", "-o", tmp_path, "--overwrite")
    assert r.exit_code == 2 and "refusing to overwrite the input" in r.output
    assert (tmp_path / "a.png").read_bytes() == before


def test_degrade_demo_writes_both_and_scores(models, tmp_path, random_image):
    write_image(tmp_path / "a.png", random_image((32, 32, 1)))
    r = _run(models["grey"], tmp_path / "a.png", "-o", tmp_path / "out", "--degrade", "noise:25", "--json", tmp_path / "j.json")
    assert r.exit_code == 0, r.output
    item = json.loads((tmp_path / "j.json").read_text())["images"][0]
    assert Path(item["degraded"]).is_file() and Path(item["output"]).is_file() and "psnr" in item and "ssim" in item


def test_gt_folder_scores(models, tmp_path, random_image):
    (tmp_path / "gt").mkdir()
    write_image(tmp_path / "gt" / "a.png", random_image((32, 32, 1)))
    write_image(tmp_path / "a.png", random_image((32, 32, 1)))
    r = _run(models["grey"], tmp_path / "a.png", "-o", tmp_path / "out", "--gt", tmp_path / "gt", "--json", tmp_path / "j.json")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "j.json").read_text())["images"][0]["psnr"] > 0


# --------------------------------------------------------------------------- bad input, one at a time


@pytest.fixture
def batch_with(models, random_image):
    """``batch_with(tmp_path, make_bad, name, needle, extra=())``: a good image plus one bad one: the good one is
    restored, the bad one fails with one line, exit 2, no partial file."""
    return functools.partial(_batch_with, models, random_image)


def _batch_with(models, random_image, tmp_path, make_bad, name, needle, extra=()):
    src = tmp_path / "in"
    src.mkdir(exist_ok=True)
    write_image(src / "good.png", random_image((16, 16, 1)))
    make_bad(src / name)
    outdir = tmp_path / "out"
    r = _run(models["grey"], src / "good.png", src / name, "-o", outdir, "--json", tmp_path / "j.json", *extra)
    assert r.exit_code == 2, r.output
    items = {Path(i["input"]).name: i for i in json.loads((tmp_path / "j.json").read_text())["images"]}
    assert items["good.png"]["status"] == "ok" and (outdir / "good.png").is_file()
    assert items[name]["status"] == "error" and needle in items[name]["error"], items[name]
    assert "\n" not in items[name]["error"]
    assert not (outdir / name).exists() and _leftovers(outdir) == []
    assert "Traceback" not in r.output
    return r


def test_truncated_png(tmp_path, random_image, batch_with):
    def bad(p):
        write_image(tmp_path / "full.png", random_image((64, 64, 1)))
        p.write_bytes((tmp_path / "full.png").read_bytes()[:200])
    batch_with(tmp_path, bad, "trunc.png", "cannot read image")


def test_empty_file(tmp_path, batch_with):
    batch_with(tmp_path, lambda p: p.write_bytes(b""), "empty.png", "the file is empty")


def test_text_file_named_png(tmp_path, batch_with):
    batch_with(tmp_path, lambda p: p.write_text("not an image\n"), "text.png", "cannot read image")


def test_tiff_with_five_channels(tmp_path, random_image, batch_with):
    def bad(p):
        tifffile.imwrite(p, random_image((12, 12, 5)), planarconfig="contig", photometric="minisblack")
    batch_with(tmp_path, bad, "five.tif", "unsupported TIFF layout")


def test_nan_output_writes_nothing(tmp_path, monkeypatch, random_image, batch_with):
    original = backends.PyTorchRunner._infer

    def nan_for_large(self, feed):
        out = original(self, feed)
        if feed["input"].shape[-1] > 16:  # only the bad image (the good one is 16 px wide)
            out["output"][:] = np.nan
        return out

    monkeypatch.setattr(backends.PyTorchRunner, "_infer", nan_for_large)
    batch_with(tmp_path, lambda p: write_image(p, random_image((20, 20, 1))), "nan.png", "NaN/Inf")


def test_unwritable_output_folder(tmp_path, monkeypatch, random_image, batch_with):
    """Writing fails (here: mkstemp in the output folder raises EACCES for one file): that item fails, the rest continue."""
    from restormer_deploy.restormer import fileio
    import tempfile


    real = tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        if str(kwargs.get("prefix", "")).startswith(".locked") and Path(kwargs.get("dir", "")).name == "out":
            raise PermissionError(13, "Permission denied")
        return real(*args, **kwargs)

    monkeypatch.setattr(fileio.tempfile, "mkstemp", mkstemp)
    r = batch_with(tmp_path, lambda p: write_image(p, random_image((16, 16, 1))), "locked.png", "Permission denied")
    assert "cannot write" in r.output


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_output_folder(models, tmp_path, random_image):
    write_image(tmp_path / "a.png", random_image((16, 16, 1)))
    outdir = tmp_path / "ro"
    outdir.mkdir()
    outdir.chmod(0o555)
    try:
        r = _run(models["grey"], tmp_path / "a.png", "-o", outdir)
        assert r.exit_code == 2 and "cannot write" in r.output
        assert list(outdir.iterdir()) == []
    finally:
        outdir.chmod(0o755)


@pytest.mark.parametrize("model", ["grey", "rgb"])
def test_one_pixel_image(models, tmp_path, model):
    write_image(tmp_path / "p.png", np.array([[[200]]], np.uint8))
    r = _run(models[model], tmp_path / "p.png", "-o", tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert read_image(tmp_path / "out" / "p.png").shape == (1, 1, 1)


def test_bad_usage_exits_2(models, tmp_path, random_image):
    write_image(tmp_path / "a.png", random_image((16, 16, 1)))
    assert _run("no-such-model", tmp_path / "a.png", "-o", tmp_path / "o").exit_code == 2
    assert _run(models["grey"], str(tmp_path / "*.xyz"), "-o", tmp_path / "o").exit_code == 2
    assert _run(models["grey"], tmp_path / "a.png", "-o", tmp_path / "o", "--backend", "nope").exit_code == 2
    assert _run(models["grey"], tmp_path / "a.png", "-o", tmp_path / "o", "--tile", "32", "--tile-overlap", "32").exit_code == 2
    assert _run(models["grey"], tmp_path / "a.png", "-o", tmp_path / "a.png").exit_code == 2
    assert _run(models["grey"], tmp_path / "a.png", "-o", tmp_path / "o", "--degrade", "blur").exit_code == 2


def test_help_has_examples():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0 and "Examples" in r.output


def test_super_resolution_tiled_with_alpha(tmp_path, small_checkpoint, random_image):
    """Scale 4: the output is 4x the input (tiled too), the alpha is nearest-upscaled. (Tiled-vs-untiled accuracy
    for SR is tested in tests/restormer/test_tiling.py on a local net: this random Converse net is not local.)"""
    ckpt = str(small_checkpoint(tmp_path, "converse-srresnet")[0])
    colour, alpha = random_image((20, 28, 3), seed=5), random_image((20, 28, 1), seed=6)
    write_image(tmp_path / "s.png", colour, alpha)
    r1 = _run(ckpt, tmp_path / "s.png", "-o", tmp_path / "o1")
    r2 = _run(ckpt, tmp_path / "s.png", "-o", tmp_path / "o2", "--tile", "16", "--tile-overlap", "8")
    assert r1.exit_code == r2.exit_code == 0, r1.output + r2.output
    a, a_alpha = read_image_alpha(tmp_path / "o1" / "s.png")
    b, _ = read_image_alpha(tmp_path / "o2" / "s.png")
    assert a.shape == (80, 112, 3)
    np.testing.assert_array_equal(a_alpha, np.repeat(np.repeat(alpha, 4, 0), 4, 1))
    assert b.shape == a.shape


@pytest.mark.parametrize("orientation", range(1, 9))
def test_tiff_orientation_matches_pillow_exif(tmp_path, orientation, random_image):
    a = random_image((5, 8, 3), seed=orientation)
    tifffile.imwrite(tmp_path / "o.tif", a, photometric="rgb", extratags=[(274, "H", 1, orientation, True)])
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(a).save(tmp_path / "o.png", exif=exif.tobytes())
    np.testing.assert_array_equal(read_image(tmp_path / "o.tif"), read_image(tmp_path / "o.png"))
