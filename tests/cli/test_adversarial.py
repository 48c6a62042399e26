"""Bad and hostile input, walked through every command (issue 16).

Each case prepares a folder of files, runs one command in-process, and asserts what every command
promises on bad input (docs/BAD_INPUT.md):

- the exit status (2: bad input, 1: a check failed);
- no traceback (no uncaught exception) and an ``error:`` line naming the offending file or option;
- no file created, removed or changed outside the command's output (``writes``), and no existing
  file changed inside it unless the case says so;
- the rest of a batch is processed (``then`` checks it).

Extend the table: it is how the next regression gets caught.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from restormer_deploy.restormer.imageio import write_image

runner = CliRunner()

pytestmark = pytest.mark.usefixtures("one_thread")


def _snapshot(root: Path) -> dict[str, str]:
    files = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            files[rel] = "link:" + str(p.readlink())
        elif p.is_file():
            files[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            files[rel] = "dir"
    return files


class _Evil:
    """Unpickling this would create the file ``PWNED`` (it must never happen: weights_only=True)."""

    def __reduce__(self):
        import os

        return (os.system, (f"touch {Path.cwd() / 'PWNED'}",))


@dataclass
class Case:
    id: str
    command: str  # module under cli/
    setup: Callable[[Path, dict, SimpleNamespace], list[str]]  # (root, art, make) -> argv; make: image builders
    exit: int
    names: str  # what the error line must mention
    writes: tuple[str, ...] = ("out",)  # paths (relative to root) the command may create or change
    then: Callable[[Path], None] | None = None
    errors: int | None = 1  # number of error: lines (None: at least one)
    extra: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)  # environment variables set for the run


def _images(make, root: Path, names=("a.png", "b.png")) -> Path:
    src = root / "in"
    src.mkdir(exist_ok=True)
    for i, n in enumerate(names):
        write_image(src / n, make.image((24, 24), seed=i))
    return src


# ---------------------------------------------------------------------------------- setups


def run_unreadable_image(root, art, make):
    src = _images(make, root)
    (src / "c_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return ["run", art["ckpt"], src, "-o", root / "out"]


def run_truncated_png(root, art, make):
    src = _images(make, root)
    good = (src / "a.png").read_bytes()
    (src / "c_truncated.png").write_bytes(good[: len(good) // 2])
    return ["run", art["ckpt"], src, "-o", root / "out"]


def run_output_is_input_via_symlink(root, art, make):
    src = _images(make, root)
    (root / "out").symlink_to(src, target_is_directory=True)
    return ["run", art["ckpt"], src, "-o", root / "out"]


def run_garbage_onnx(root, art, make):
    src = _images(make, root)
    (root / "model.onnx").write_bytes(b"\x00garbage" * 100)
    return ["run", root / "model.onnx", src, "-o", root / "out"]


def run_garbage_safetensors(root, art, make):
    src = _images(make, root)
    (root / "model.safetensors").write_bytes(b"{not safetensors")
    return ["run", root / "model.safetensors", src, "-o", root / "out"]


def run_pickle_weights(root, art, make):
    src = _images(make, root)
    torch.save({"state_dict": _Evil()}, root / "evil.pth", pickle_module=pickle)
    return ["run", "converse-dncnn", src, "-o", root / "out", "--weights", root / "evil.pth"]


def run_fixed_size_onnx(root, art, make):
    src = _images(make, root, ("a_small.png",))
    write_image(src / "b_big.png", make.image((40, 36)))
    model = onnx.load(str(art["fp32"]))
    for d, v in zip(model.graph.input[0].type.tensor_type.shape.dim, (1, 1, 24, 24)):
        d.ClearField("dim_param")
        d.dim_value = v
    onnx.save(model, str(root / "fixed.onnx"))
    return ["run", root / "fixed.onnx", src, "-o", root / "out", "--backend", "ort-cpu"]


def run_degraded_collision(root, art, make):
    src = _images(make, root, ("x.png", "x_degraded.png"))
    return ["run", art["ckpt"], src, "-o", root / "out", "--degrade", "noise:25"]


def run_json_is_a_folder(root, art, make):
    src = _images(make, root)
    (root / "report").mkdir()
    return ["run", art["ckpt"], src, "-o", root / "out", "--json", root / "report"]


def run_missing_input(root, art, make):
    return ["run", art["ckpt"], root / "nowhere", "-o", root / "out"]


def export_out_is_folder(root, art, make):
    (root / "m.onnx").mkdir()
    return ["export", art["ckpt"], "--out", root / "m.onnx"]


def export_bad_opset(root, art, make):
    return ["export", art["ckpt"], "--out", root / "out" / "m.onnx", "--opset", "99"]


def export_triton_dotdot(root, art, make):
    model = onnx.load(str(art["fp32"]))
    for p in model.metadata_props:
        if p.key == "preset":
            p.value = ".."
    (root / "work").mkdir()
    onnx.save(model, str(root / "work" / "m.onnx"))
    (root / "README.md").write_text("mine")
    (root / "out").mkdir()
    return ["export", root / "work" / "m.onnx", "--format", "triton-repo", "--backend", "onnxruntime",
            "--out", root / "out" / "repo"]


def export_check_trt_unknown_version(root, art, make):
    return ["export", art["fp32"], "--check-trt", "12"]


def eval_nan_floor(root, art, make):
    src = _images(make, root)
    return ["eval", art["ckpt"], "--data", src, "--degrade", "noise:25", "--min-psnr", "nan"]


def eval_unreadable(root, art, make):
    src = _images(make, root)
    (src / "c_broken.png").write_bytes(b"nope")
    return ["eval", art["ckpt"], "--data", src, "--degrade", "noise:25"]


def parity_unreadable(root, art, make):
    src = _images(make, root, ("b.png", "c.png"))
    (src / "a_broken.png").write_bytes(b"nope")
    return ["parity", art["fp32"], "--reference", art["ckpt"], "--images", src, "--degrade", "noise:10"]


def bench_one_bad(root, art, make):
    (root / "bad.onnx").write_bytes(b"garbage")
    return ["bench", root / "bad.onnx", art["fp32"], "--size", "24x24", "--iters", "1", "--warmup", "0",
            "--json", root / "out" / "b.json"]


def info_garbage_onnx(root, art, make):
    (root / "bad.onnx").write_bytes(b"garbage")
    return ["info", root / "bad.onnx"]


def info_engine_garbage_sidecar(root, art, make):
    (root / "m.engine").write_bytes(b"plan")
    (root / "m.engine.json").write_text("{not json")
    return ["info", root / "m.engine"]


def run_pixel_bomb_tiff(root, art, make):
    src = _images(make, root)
    make.tiff_header_only(src / "c_bomb.tif", 25000, 25000)
    return ["run", art["ckpt"], src, "-o", root / "out"]


def run_multipage_tiff(root, art, make):
    import tifffile

    src = _images(make, root)
    with tifffile.TiffWriter(src / "c_pages.tif") as tif:
        for i in range(3):
            tif.write(make.image((16, 16), seed=i))
    return ["run", art["ckpt"], src, "-o", root / "out"]


def run_animated_png(root, art, make):
    from PIL import Image

    src = _images(make, root)
    frames = [Image.fromarray(make.image((16, 16), seed=i)) for i in range(3)]
    frames[0].save(src / "c_anim.png", save_all=True, append_images=frames[1:])
    return ["run", art["ckpt"], src, "-o", root / "out"]


def run_crafted_checkpoint_config(root, art, make):
    import shutil

    src = _images(make, root)
    shutil.copy(art["ckpt"], root / "m.safetensors")
    cfg = json.loads(Path(art["ckpt"]).with_suffix(".json").read_text())
    cfg["model"]["scale"] = "x"
    (root / "m.json").write_text(json.dumps(cfg))
    return ["run", root / "m.safetensors", src, "-o", root / "out"]


def run_zero_kernel(root, art, make):
    src = _images(make, root)
    np.save(root / "k.npy", np.zeros((7, 7), np.float32))
    return ["run", art["ckpt"], src, "-o", root / "out", "--degrade", f"blur:{root / 'k.npy'}+noise:5"]


def export_triton_external_data_outside(root, art, make):
    model = onnx.load(str(art["fp32"]))
    (root / "work").mkdir()
    (root / "secret").mkdir()
    onnx.save(model, str(root / "work" / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)
    (root / "work" / "weights.bin").rename(root / "secret" / "weights.bin")
    model = onnx.load(str(root / "work" / "m.onnx"), load_external_data=False)
    for init in model.graph.initializer:  # point the data outside the model's folder (onnx.save refuses '..')
        for entry in init.external_data:
            if entry.key == "location":
                entry.value = "../secret/weights.bin"
    (root / "work" / "m.onnx").write_bytes(model.SerializeToString())
    (root / "out").mkdir()
    return ["export", root / "work" / "m.onnx", "--format", "triton-repo", "--backend", "onnxruntime",
            "--out", root / "out" / "repo"]


def train_lr_infinite(root, art, make):
    src = _images(make, root)
    cfg = {"model": "converse-dncnn", "model_config": {"num_blocks": 1, "num_features": 4}, "run_dir": str(root / "out"),
           "data": {"clean": [str(src)]}, "train": {"iterations": 1, "patch_sizes": [16], "batch_sizes": [1],
                                                     "stage_iters": [1]}}
    (root / "c.json").write_text(json.dumps(cfg))
    return ["train", "--config", root / "c.json", "train.lr=.inf"]


def train_config_is_png(root, art, make):
    write_image(root / "config.png", make.image((8, 8, 3)))
    return ["train", "--config", root / "config.png"]


def run_json_is_a_symlink(root, art, make):
    src = _images(make, root)
    (root / "mine.txt").write_text("keep me")
    (root / "report.json").symlink_to("mine.txt")
    return ["run", art["ckpt"], src, "-o", root / "out", "--json", root / "report.json"]


def run_json_is_a_fifo(root, art, make):
    import os

    src = _images(make, root)
    os.mkfifo(root / "report.json")
    return ["run", art["ckpt"], src, "-o", root / "out", "--json", root / "report.json"]


def run_markup_in_names(root, art, make):
    src = _images(make, root, ("a[red]b.png", "x[bold].png"))
    (root / "d[").mkdir()  # the path d[/]... holds the markup closing tag [/]
    (root / "d[" / "]\x1b]0;owned\x07.png").write_bytes(b"nope")
    return ["run", art["ckpt"], src, root / "d[" / "]\x1b]0;owned\x07.png", "-o", root / "out"]


def run_shard_same_name(root, art, make):
    for folder in ("dirA", "dirB"):
        _images(make, root, ("x.png",))
        (root / "in").rename(root / folder)
    return ["run", art["ckpt"], root / "dirA", root / "dirB", "-o", root / "out", "--shard", "1/2"]


def run_with_degrade(*extra):
    def setup(root, art, make):
        src = _images(make, root)
        return ["run", art["ckpt"], src, "-o", root / "out", "--degrade", "noise:25", *extra]
    return setup


def demo_out_is_a_file(root, art, make):
    (root / "demo").write_text("mine")
    return ["demo", "--out", root / "demo"]


def demo_threads_overflow(root, art, make):
    return ["demo", "--out", root / "out" / "demo", "--threads", "99999999999"]


def quantize_garbage_onnx(root, art, make):
    src = _images(make, root)
    (root / "bad.onnx").write_bytes(b"garbage")
    return ["quantize", root / "bad.onnx", "-o", root / "q.onnx", "--calib-dir", src]


def client_timeout_nan(root, art, make):
    pytest.importorskip("tritonclient.http")
    src = _images(make, root)
    return ["client", src, "-o", root / "out", "--model", "m", "--timeout", "nan"]


def run_pth_zip_bomb(root, art, make):
    """An 80 MB tensor saved by torch.save, its zip members then deflated: a file of about 100 KB."""
    import zipfile

    src = _images(make, root)
    torch.save({"state_dict": {"w": torch.zeros(20_000_000)}}, root / "plain.pth")
    with zipfile.ZipFile(root / "plain.pth") as plain, \
            zipfile.ZipFile(root / "bomb.pth", "w", zipfile.ZIP_DEFLATED) as bomb:
        for info in plain.infolist():
            bomb.writestr(info.filename, plain.read(info))
    (root / "plain.pth").unlink()
    return ["run", "converse-dncnn", src, "-o", root / "out", "--weights", root / "bomb.pth"]


def run_config_nested_deep(root, art, make):
    import shutil

    src = _images(make, root)
    shutil.copy(art["ckpt"], root / "m.safetensors")
    (root / "m.json").write_text("[" * 200_000 + "]" * 200_000)
    return ["run", root / "m.safetensors", src, "-o", root / "out"]


def parity_markup_in_a_path(root, art, make):
    src = _images(make, root, ("b.png", "c.png"))
    src = src.rename(root / "im[")
    (src / "]bad.png").write_bytes(b"nope")  # the path im[/]bad.png: a closing tag with nothing open
    return ["parity", art["fp32"], "--reference", art["ckpt"], "--images", src, "--degrade", "noise:10"]


def _not_written(*names):
    def check(root: Path):
        for n in names:
            assert not (root / "out" / n).exists(), f"{n} was written"
    return check


# ---------------------------------------------------------------------------------- checks


def _restored(*names):
    def check(root: Path):
        for n in names:
            assert (root / "out" / n).is_file(), f"{n} was not restored"
    return check


def _json_rows(path, key, count):
    def check(root: Path):
        assert len(json.loads((root / path).read_text())[key]) == count
    return check


CASES = [
    Case("run-unreadable-image", "run", run_unreadable_image, 2, "c_broken.png", then=_restored("a.png", "b.png")),
    Case("run-truncated-png", "run", run_truncated_png, 2, "c_truncated.png", then=_restored("a.png", "b.png")),
    Case("run-out-symlink-to-inputs", "run", run_output_is_input_via_symlink, 2, "out", writes=(), errors=None),
    Case("run-garbage-onnx", "run", run_garbage_onnx, 2, "model.onnx", writes=()),
    Case("run-garbage-safetensors", "run", run_garbage_safetensors, 2, "model.safetensors", writes=()),
    Case("run-pickle-weights", "run", run_pickle_weights, 2, "evil.pth", writes=()),
    Case("run-onnx-runtime-error", "run", run_fixed_size_onnx, 2, "b_big.png", then=_restored("a_small.png")),
    Case("run-degraded-collision", "run", run_degraded_collision, 2, "x_degraded.png", then=_restored("x.png")),
    Case("run-json-is-a-folder", "run", run_json_is_a_folder, 2, "report", then=_restored("a.png", "b.png")),
    Case("run-missing-input", "run", run_missing_input, 2, "nowhere", writes=("out",)),
    Case("export-out-is-a-folder", "export", export_out_is_folder, 2, "m.onnx", writes=()),
    Case("export-opset-99", "export", export_bad_opset, 2, "opset", writes=()),
    Case("export-triton-name-dotdot", "export", export_triton_dotdot, 2, "--model-name", writes=()),
    Case("export-check-trt-12", "export", export_check_trt_unknown_version, 2, "12", writes=()),
    Case("eval-min-psnr-nan", "eval", eval_nan_floor, 2, "--min-psnr", writes=()),
    Case("eval-unreadable", "eval", eval_unreadable, 2, "c_broken.png", writes=(), errors=None),
    Case("parity-unreadable", "parity", parity_unreadable, 2, "a_broken.png", writes=(), errors=None),
    Case("bench-one-bad-artifact", "bench", bench_one_bad, 2, "bad.onnx", then=_json_rows("out/b.json", "rows", 1)),
    Case("info-garbage-onnx", "info", info_garbage_onnx, 2, "bad.onnx", writes=()),
    Case("info-engine-garbage-sidecar", "info", info_engine_garbage_sidecar, 2, "m.engine", writes=()),
    Case("train-config-is-png", "train", train_config_is_png, 2, "config.png", writes=()),
    Case("train-lr-infinite", "train", train_lr_infinite, 2, "train.lr", writes=()),
    Case("run-pixel-bomb-tiff", "run", run_pixel_bomb_tiff, 2, "c_bomb.tif", then=_restored("a.png", "b.png")),
    Case("run-multipage-tiff", "run", run_multipage_tiff, 2, "c_pages.tif", then=_restored("a.png", "b.png")),
    Case("run-animated-png", "run", run_animated_png, 2, "c_anim.png", then=_restored("a.png", "b.png")),
    Case("run-crafted-checkpoint-config", "run", run_crafted_checkpoint_config, 2, "m.safetensors", writes=()),
    Case("run-all-zero-kernel", "run", run_zero_kernel, 2, "k.npy", writes=()),
    Case("run-json-is-a-symlink", "run", run_json_is_a_symlink, 2, "report.json", then=_restored("a.png", "b.png")),
    Case("run-json-is-a-fifo", "run", run_json_is_a_fifo, 2, "report.json", then=_restored("a.png", "b.png")),
    Case("run-markup-and-escapes-in-names", "run", run_markup_in_names, 2, "d[/]\\x1b]0;owned\\x07.png",
         then=_restored("a[red]b.png", "x[bold].png")),
    Case("run-shard-same-name-in-another-shard", "run", run_shard_same_name, 2, "x.png", then=_not_written("x.png")),
    Case("run-seed-negative", "run", run_with_degrade("--seed", "-1"), 2, "--seed", writes=()),
    Case("run-degrade-sr-99999", "run", lambda root, art, make: ["run", art["ckpt"], _images(make, root), "-o",
                                                                  root / "out", "--degrade", "sr:99999"],
         2, "--degrade", writes=()),
    Case("parity-markup-in-a-path", "parity", parity_markup_in_a_path, 2, "bad.png", writes=(), errors=None),
    Case("run-threads-overflow", "run", run_with_degrade("--threads", "99999999999"), 2, "--threads", writes=()),
    Case("run-max-pixels-env-abc", "run", run_with_degrade(), 2, "RESTORE_MAX_PIXELS", writes=(),
         env={"RESTORE_MAX_PIXELS": "abc"}),
    Case("demo-out-is-a-file", "demo", demo_out_is_a_file, 2, "demo", writes=()),
    Case("demo-threads-overflow", "demo", demo_threads_overflow, 2, "--threads", writes=()),
    Case("quantize-garbage-onnx", "quantize", quantize_garbage_onnx, 2, "bad.onnx", writes=()),
    Case("client-timeout-nan", "client", client_timeout_nan, 2, "--timeout", writes=()),
    Case("run-pth-zip-bomb", "run", run_pth_zip_bomb, 2, "bytes unpacked", writes=()),
    Case("run-config-nested-deep", "run", run_config_nested_deep, 2, "m.json", writes=()),
    Case("export-triton-external-data-outside", "export", export_triton_external_data_outside, 2, "m.onnx", writes=()),
]


def _app(command: str):
    import importlib

    return importlib.import_module(f"restormer_deploy.cli.{command}").app


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, art, tmp_path, monkeypatch, random_image, tiff_header_only):
    root = tmp_path / "case"
    root.mkdir()
    monkeypatch.chdir(root)
    make = SimpleNamespace(image=random_image, tiff_header_only=tiff_header_only)
    for k, v in case.env.items():
        monkeypatch.setenv(k, v)
    argv = [str(a) for a in case.setup(root, art, make)]
    (root / "out").mkdir(exist_ok=True) if "out" in case.writes and not (root / "out").exists() else None
    before = _snapshot(root)
    result = runner.invoke(_app(case.command), argv[1:])
    out = result.output
    assert "\x1b" not in out and "\x07" not in out, f"a control character reached the terminal: {out!r}"
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"uncaught {type(result.exception).__name__}: {result.exception}\n{out}"
    assert "Traceback" not in out, out
    assert result.exit_code == case.exit, (result.exit_code, out)
    lines = [line for line in out.splitlines() if line.startswith("error:")]
    assert lines and any(case.names in line for line in lines), out
    if case.errors is not None:
        assert len(lines) == case.errors, out
    assert not (root / "PWNED").exists(), "a pickle ran code"
    after = _snapshot(root)
    allowed = tuple(case.writes)
    changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
    outside = {p for p in changed if not any(p == w or p.startswith(w + "/") for w in allowed)}
    assert not outside, f"written outside the output: {sorted(outside)}"
    modified = {p for p in before if p in after and before[p] != after[p] and before[p] != "dir"}
    assert not modified, f"existing files changed: {sorted(modified)}"
    if case.then:
        case.then(root)


def test_the_table_covers_every_command(repo_root):
    """Every console script of pyproject.toml (the command registry) has at least one case."""
    import tomllib

    scripts = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]["scripts"]
    commands = {target.split(":")[0].rsplit(".", 1)[-1] for target in scripts.values()}
    assert {"run", "client", "demo"} <= commands  # the registry is what is read
    missing = commands - {c.command for c in CASES}
    assert not missing, f"no bad-input case for {sorted(missing)}"


def test_json_never_replaces_a_device_node(art, tmp_path, monkeypatch):
    """As root, ``--json NODE`` must not turn a character device (here a copy of /dev/null) into a file."""
    import os
    import stat

    if os.geteuid() != 0:
        pytest.skip("mknod needs root (CI as root runs this)")
    node = tmp_path / "null"
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    result = runner.invoke(_app("info"), [str(art["fp32"]), "--json", str(node)])
    assert stat.S_ISCHR(os.lstat(node).st_mode), "the device node was replaced"
    assert result.exit_code == 2 and "null" in result.output, result.output


def test_names_with_markup_are_printed_as_they_are(art, tmp_path, monkeypatch, random_image):
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "x[bold].png", random_image((24, 24)))
    result = runner.invoke(_app("run"), [str(art["ckpt"]), str(src), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "x[bold].png" in result.output, result.output


# ---------------------------------------------------------------------------------- the export cache (issue 27)
# engines/export_cache.py with the exporter replaced by a copy of the session's verified FP32 file of
# art["ckpt"] (the runner-level check against PyTorch still runs for real).


def _bounded(call, seconds: float = 120.0):
    """``call()``'s result; a hang (a FIFO read, /dev/zero) fails the test instead of blocking CI."""
    import threading

    box = {}

    def target():
        try:
            box["value"] = call()
        except BaseException as exc:  # handed to the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "hung"
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.fixture
def cache(art, tmp_path, monkeypatch, fast_path):
    """SimpleNamespace(root, make(), calls, exporting): the cache folder, ``ensure_export`` of art's
    checkpoint there, the exports made; ``exporting`` (a list of callables) runs inside the fake export."""
    from restormer_deploy.engines import export_cache
    from restormer_deploy.export import onnx_export
    from restormer_deploy.restormer.fileio import atomic_write_bytes

    root = tmp_path / "cache"
    data = Path(art["fp32"]).read_bytes()
    ns = SimpleNamespace(root=root, calls=[], exporting=[], mod=export_cache)

    def export(model, out, *, weights=None, options=None, quantizer=None):
        ns.calls.append(model)
        for hook in ns.exporting:
            hook(Path(out))
        atomic_write_bytes(out, data)
        return onnx_export.ExportResult(path=str(out), precision="fp32", converse_lowering="direct",
                                        max_abs_err=0.0, psnr_vs_torch=100.0)

    monkeypatch.setattr(onnx_export, "export", export)
    ns.make = lambda: _bounded(lambda: export_cache.ensure_export(str(art["ckpt"]), root=root, threads=1))
    return ns


@pytest.mark.parametrize("kind", ["record-fifo", "onnx-fifo", "onnx-symlink-to-dev-zero", "record-symlink"])
def test_cache_reads_only_regular_files(cache, kind):
    import os

    first = cache.make()
    target = first.path.with_suffix(".json") if kind.startswith("record") else first.path
    saved = target.read_bytes()
    target.unlink()
    if kind.endswith("fifo"):
        os.mkfifo(target)
    elif kind == "onnx-symlink-to-dev-zero":
        target.symlink_to("/dev/zero")
    else:
        (cache.root / "elsewhere.json").write_bytes(saved)
        target.symlink_to(cache.root / "elsewhere.json")
    again = cache.make()
    assert again.status == "remade" and ("symlink" in again.reason or "not a regular file" in again.reason), again.reason
    assert target.is_file() and not target.is_symlink()


def test_cache_checks_sizes_before_reading(cache):
    first = cache.make()
    with open(first.path, "r+b") as f:  # sparse: 3 GB declared, nothing to read in a test
        f.truncate(3 << 30)
    again = cache.make()
    assert again.status == "remade" and "larger than" in again.reason, again.reason


def test_interrupted_export_keeps_another_process_s_finished_entry(cache, art):
    import shutil

    other = cache.make()  # what another process finished while this one was exporting
    keep = {p: p.read_bytes() for p in (other.path, other.path.with_suffix(".json"))}
    for p in keep:  # this process found nothing
        p.rename(p.with_name(p.name + ".other"))

    def finish_then_interrupt(out):
        for p in keep:
            shutil.copyfile(p.with_name(p.name + ".other"), p)
        raise KeyboardInterrupt

    cache.exporting.append(finish_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        cache.mod.ensure_export(str(art["ckpt"]), root=cache.root, threads=1)
    assert {p: p.read_bytes() for p in keep if p.exists()} == keep, "the other process's entry was deleted"


def test_concurrent_first_runs_export_once(cache):
    import threading
    import time

    started = threading.Barrier(2)
    cache.exporting.append(lambda out: time.sleep(1.0))  # both callers are past their first look meanwhile
    results = []

    def one():
        started.wait()
        results.append(cache.make())

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert sorted(r.status for r in results) == ["exported", "reused"] and len(cache.calls) == 1, \
        ([r.status for r in results], cache.calls)


def test_cache_entry_writable_by_others_is_not_used(cache):
    first = cache.make()
    first.path.chmod(0o666)
    again = cache.make()
    assert again.status == "remade" and "writable by other users" in again.reason, again.reason
    assert not first.path.stat().st_mode & 0o022  # the new entry is not writable by others


def test_cache_folder_writable_by_others_is_not_used(cache, art):
    cache.root.mkdir(mode=0o700)
    cache.root.chmod(0o777)
    runner, notice = _bounded(lambda: cache.mod.fast_runner(str(art["ckpt"]), root=cache.root, threads=1))
    assert runner.name.startswith("torch") and "writable by other users" in notice, notice
    assert not cache.calls


def test_planted_model_with_a_matching_record_is_not_used(cache):
    """A file that inverts the image (255 - x), its record carrying its own sha256: re-run against PyTorch."""
    from onnx import helper

    from restormer_deploy.restormer.fileio import sha256_file

    first = cache.make()
    model = onnx.load(str(first.path))
    out = model.graph.output[0].name
    model.graph.node.append(helper.make_node("Sub", ["one_27", out + "_raw"], [out]))
    for node in model.graph.node[:-1]:
        node.output[:] = [o + "_raw" if o == out else o for o in node.output]
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.ones((), np.float32), "one_27"))
    onnx.save(model, str(first.path))
    record_path = first.path.with_suffix(".json")
    record = json.loads(record_path.read_text())
    record["onnx_sha256"] = sha256_file(first.path)
    record_path.write_text(json.dumps(record))
    again = cache.make()
    assert again.status == "remade" and "not the model" in again.reason, again.reason


def test_cache_entry_of_another_user_is_not_used(cache):
    import os

    if os.geteuid() != 0:
        pytest.skip("chown to another user needs root (CI as root runs this)")
    first = cache.make()
    os.chown(first.path, 65534, 65534)
    again = cache.make()
    assert again.status == "remade" and "owned by uid 65534" in again.reason, again.reason


def test_cache_root_ignores_empty_home_and_relative_xdg(monkeypatch, tmp_path):
    import os
    import pwd

    from restormer_deploy.engines import export_cache

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RESTORE_CACHE_DIR", raising=False)
    account = Path(pwd.getpwuid(os.getuid()).pw_dir)
    monkeypatch.setenv("HOME", "")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert export_cache.cache_root() == account / ".cache" / "restormer-deploy"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    assert export_cache.cache_root() == tmp_path / "home" / ".cache" / "restormer-deploy"


# ---------------------------------------------------------------------------------- restore-train (issue 27)


@pytest.mark.parametrize("env, names", [({"RANK": "1"}, "$RANK=1"), ({"WORLD_SIZE": "abc"}, "$WORLD_SIZE"),
                                        ({"LOCAL_RANK": "-1"}, "$LOCAL_RANK")])
def test_train_refuses_a_stray_rank_or_malformed_torchrun_variables(env, names, tmp_path, monkeypatch, smooth_images,
                                                                    tiny_config, write_config):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    cfg = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, smooth_images(tmp_path / "img", n=2, size=32)))
    result = runner.invoke(_app("train"), ["--config", str(cfg)])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert any(line.startswith("error:") and names in line for line in result.output.splitlines()), result.output
    assert "done:" not in result.output and not (tmp_path / "run" / "last.safetensors").exists()


def test_train_checkpoint_set_is_written_whole_or_not_at_all(tmp_path, monkeypatch, smooth_images, tiny_config,
                                                             write_config):
    """A full disk while the resume state of the second checkpoint is written: the first set stays whole."""
    import errno

    from safetensors import safe_open

    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    cfg = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, smooth_images(tmp_path / "img", n=2, size=32),
                                                        val={"every": 100}))
    real_save, saves = torch.save, []

    def save(obj, f, *args, **kwargs):
        saves.append(f)
        if len(saves) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    result = runner.invoke(_app("train"), ["--config", str(cfg)])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert any(line.startswith("error:") and "last.state.pt" in line for line in result.output.splitlines()), result.output
    run = tmp_path / "run"
    with safe_open(str(run / "last.safetensors"), "pt") as f:
        in_weights = json.loads(f.metadata()["config"])["iteration"]
    in_json = json.loads((run / "last.json").read_text())["iteration"]
    in_state = torch.load(run / "last.state.pt", weights_only=True)["iteration"]
    assert in_weights == in_json == in_state == 4, (in_weights, in_json, in_state)
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


def test_run_interrupted_reports_and_writes_json_for_the_images_done(art, tmp_path, monkeypatch, random_image):
    """Ctrl-C on the second image: exit 130, one error line, and --json lists the first image."""
    from restormer_deploy.engines.restorer import Restorer

    src = tmp_path / "in"
    src.mkdir()
    for i, n in enumerate(("a.png", "b.png", "c.png")):
        write_image(src / n, random_image((24, 24), seed=i))
    real, calls = Restorer.restore, []

    def restore(self, path, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, path, **kwargs)

    monkeypatch.setattr(Restorer, "restore", restore)
    result = runner.invoke(_app("run"), [str(art["ckpt"]), str(src), "-o", str(tmp_path / "out"),
                                         "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 130, result.output
    assert [line for line in result.output.splitlines() if line.startswith("error:")] and "interrupted" in result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["interrupted"] is True and [Path(i["input"]).name for i in report["images"]] == ["a.png"]


# ---------------------------------------------------------------------------------- restore-client vs a hostile server


_NETWORK_CONFIG = {
    "name": "inv", "max_batch_size": 0,
    "input": [{"name": "input", "data_type": "TYPE_FP32", "dims": [1, 3, -1, -1]}],
    "output": [{"name": "output", "data_type": "TYPE_FP32", "dims": [1, 3, -1, -1]}],
    "parameters": {"in_channels": {"string_value": "3"}, "pad_multiple": {"string_value": "1"},
                   "scale": {"string_value": "1"}},
}


@pytest.fixture
def hostile_server():
    """``start(mode) -> "127.0.0.1:PORT"``: a Triton-like HTTP server whose infer answer is ``mode``:
    ok (1 - x, Triton's binary format), trickle (one byte every 50 ms, forever), huge-declared (a
    3 GB Content-Length), huge-stream (zeros without a length, forever)."""
    import http.server
    import threading
    import time

    servers = []

    def start(mode):
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                body = json.dumps(_NETWORK_CONFIG).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                data = self.rfile.read(int(self.headers["Content-Length"]))
                n = int(self.headers.get("Inference-Header-Content-Length", len(data)))
                request = json.loads(data[:n])
                shape = request["inputs"][0]["shape"]
                try:
                    if mode == "ok":
                        x = np.frombuffer(data[n:], np.float32).reshape(shape)
                        raw = (1 - x).astype(np.float32).tobytes()
                        head = json.dumps({"model_name": "inv", "outputs": [{
                            "name": "output", "datatype": "FP32", "shape": shape,
                            "parameters": {"binary_data_size": len(raw)}}]}).encode()
                        self.send_response(200)
                        self.send_header("Content-Type", "application/octet-stream")
                        self.send_header("Inference-Header-Content-Length", str(len(head)))
                        self.send_header("Content-Length", str(len(head) + len(raw)))
                        self.end_headers()
                        self.wfile.write(head + raw)
                        return
                    self.send_response(200)
                    if mode == "huge-declared":
                        self.send_header("Content-Length", str(3 << 30))
                    self.end_headers()
                    while mode != "huge-declared":
                        self.wfile.write(b"{" if mode == "trickle" else bytes(1 << 16))
                        self.wfile.flush()
                        if mode == "trickle":
                            time.sleep(0.05)
                except OSError:  # the client went away
                    pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _client_run(tmp_path, random_image, address, *extra):
    pytest.importorskip("tritonclient.http")
    from restormer_deploy.restormer.imageio import read_image

    src = tmp_path / "in"
    src.mkdir(exist_ok=True)
    image = random_image((20, 24, 3), seed=5)
    write_image(src / "a.png", image)
    result = _bounded(lambda: runner.invoke(_app("client"), [str(src), "-o", str(tmp_path / "out"), "--model", "inv",
                                                             "--url", address, *extra]), 90)
    assert "Traceback" not in result.output and (result.exception is None or isinstance(result.exception, SystemExit)), \
        result.output
    return result, image, read_image


def test_client_over_http_round_trip(tmp_path, random_image, hostile_server):
    result, image, read_image = _client_run(tmp_path, random_image, hostile_server("ok"))
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(read_image(tmp_path / "out" / "a.png"), 255 - image)


@pytest.mark.parametrize("mode, says", [("trickle", "within --timeout"), ("huge-declared", "announces"),
                                        ("huge-stream", "exceeds")])
def test_client_bounds_a_hostile_answer(mode, says, tmp_path, random_image, hostile_server):
    result, _, _ = _client_run(tmp_path, random_image, hostile_server(mode), "--timeout", "1")
    assert result.exit_code == 2, result.output
    assert any(line.startswith("error:") and says in line for line in result.output.splitlines()), result.output
    assert not (tmp_path / "out" / "a.png").exists()


@pytest.mark.parametrize("args, names", [(["--timeout", "nan"], "--timeout"), (["--timeout", "0"], "--timeout"),
                                         (["--timeout", "-1"], "--timeout"), (["--url", "http://localhost:8000"], "--url")])
def test_client_usage_errors_name_the_option(args, names, tmp_path, random_image):
    pytest.importorskip("tritonclient.http")
    write_image(tmp_path / "a.png", random_image((8, 8, 3)))
    result = runner.invoke(_app("client"), [str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--model", "m", *args])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and names in lines[0], result.output
    assert not (tmp_path / "out").exists()


def test_client_ensemble_answer_beyond_any_scale_is_refused():
    """A 2560x2560 answer for a 64x64 image (x40) from the 8-bit ensemble, whose scale the config does not give."""
    from restormer_deploy.engines.triton.client import ClientError, ServedModel, decode

    model = ServedModel("m_image", "image", "IMAGE", "RESTORED")
    big = SimpleNamespace(as_numpy=lambda name: np.zeros((1, 2560, 2560, 3), np.uint8))
    with pytest.raises(ClientError, match="x8"):
        decode(model, big, (np.array([[64, 64, 3]], np.int32), np.uint8))
    fine = SimpleNamespace(as_numpy=lambda name: np.zeros((1, 256, 256, 3), np.uint8))  # x4 super-resolution
    assert decode(model, fine, (np.array([[64, 64, 3]], np.int32), np.uint8)).shape == (256, 256, 3)


# ---------------------------------------------------------------------------------- images (issue 27, item 13)


def test_grey_png_transparency_survives_restore_run(art, tmp_path, random_image):
    from PIL import Image

    from restormer_deploy.restormer.imageio import read_image_alpha

    src = tmp_path / "in"
    src.mkdir()
    grey = random_image((24, 24), seed=3)
    grey[:4] = 7  # the transparent grey value (tRNS)
    Image.fromarray(grey).save(src / "g.png", transparency=7)
    want = np.where(grey == 7, 0, 255).astype(np.uint8)  # what the tRNS chunk says, from the pixels themselves
    result = runner.invoke(_app("run"), [str(art["ckpt"]), str(src), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    _, alpha = read_image_alpha(tmp_path / "out" / "g.png")
    assert alpha is not None, "the transparency was dropped"
    np.testing.assert_array_equal(alpha.reshape(24, 24), want)


def test_png_with_a_2_mb_icc_profile_is_read(tmp_path, random_image):
    import os

    from PIL import Image

    from restormer_deploy.restormer.imageio import read_icc_profile, read_image

    icc = os.urandom(2 << 20)  # incompressible: over Pillow's 1 MB chunk limit once decompressed
    image = random_image((16, 16, 3))
    Image.fromarray(image).save(tmp_path / "icc.png", icc_profile=icc)
    assert read_icc_profile(tmp_path / "icc.png") == icc
    np.testing.assert_array_equal(read_image(tmp_path / "icc.png"), image)


def test_run_stops_when_the_output_folder_disappears(art, tmp_path, monkeypatch, random_image):
    import shutil

    from restormer_deploy.engines.restorer import Restorer

    src = tmp_path / "in"
    src.mkdir()
    for i, n in enumerate(("a.png", "b.png", "c.png")):
        write_image(src / n, random_image((24, 24), seed=i))
    real, calls = Restorer.restore, []

    def restore(self, path, **kwargs):
        calls.append(path)
        item = real(self, path, **kwargs)
        shutil.rmtree(tmp_path / "out")  # someone removes the folder after the first image
        return item

    monkeypatch.setattr(Restorer, "restore", restore)
    result = runner.invoke(_app("run"), [str(art["ckpt"]), str(src), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "disappeared" in lines[0], result.output
    assert len(calls) == 1, "the model kept running for an output folder that is gone"


@pytest.mark.parametrize("huge", [False, True], ids=["round-trip", "oversized-answer"])
def test_client_over_grpc_bounds_the_answer(huge, tmp_path, random_image):
    """A gRPC server answering 1 - x, or 16 MB for a 20x24 image: refused by the channel, not buffered."""
    pytest.importorskip("tritonclient.grpc")
    from concurrent import futures

    import grpc
    from google.protobuf import json_format
    from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

    class Service(service_pb2_grpc.GRPCInferenceServiceServicer):
        def ModelConfig(self, request, context):
            return service_pb2.ModelConfigResponse(config=json_format.ParseDict(_NETWORK_CONFIG, model_config_pb2.ModelConfig()))

        def ModelInfer(self, request, context):
            shape = list(request.inputs[0].shape)
            x = np.frombuffer(request.raw_input_contents[0], np.float32)
            raw = bytes(16 << 20) if huge else (1 - x).astype(np.float32).tobytes()
            out = service_pb2.ModelInferResponse.InferOutputTensor(name="output", datatype="FP32", shape=shape)
            return service_pb2.ModelInferResponse(model_name="inv", outputs=[out], raw_output_contents=[raw])

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2),
                         options=[("grpc.max_send_message_length", 64 << 20)])
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Service(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        result, image, read_image = _client_run(tmp_path, random_image, f"127.0.0.1:{port}", "--protocol", "grpc",
                                                "--timeout", "20")
    finally:
        server.stop(None)
    if huge:
        assert result.exit_code == 2, result.output
        assert any(line.startswith("error:") and "exceeds" in line for line in result.output.splitlines()), result.output
    else:
        assert result.exit_code == 0, result.output
        np.testing.assert_array_equal(read_image(tmp_path / "out" / "a.png"), 255 - image)


def test_train_on_a_full_disk_keeps_the_last_checkpoint_set_whole(tmp_path, monkeypatch, smooth_images, tiny_config,
                                                                  write_config):
    """A real full disk (a tmpfs sized for one checkpoint set and a half): the second set fails whole."""
    import os
    import subprocess

    from safetensors import safe_open

    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI as root runs this)")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    images = smooth_images(tmp_path / "img", n=2, size=32)
    sized = tiny_config(tmp_path / "probe", images, val={"every": 100}, train={"iterations": 4})
    result = runner.invoke(_app("train"), ["--config", str(write_config(tmp_path / "probe.yaml", sized))])
    assert result.exit_code == 0, result.output
    one_set = sum(p.stat().st_size for p in (tmp_path / "probe" / "run").iterdir())
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={one_set * 3 // 2 + 8192}", "tmpfs", str(disk)],
                             capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()})")
    try:
        cfg = tiny_config(disk, images, val={"every": 100})  # checkpoints at 4 and 8
        result = runner.invoke(_app("train"), ["--config", str(write_config(tmp_path / "c.yaml", cfg))])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        lines = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and "No space left" in lines[0], result.output
        run = disk / "run"
        with safe_open(str(run / "last.safetensors"), "pt") as f:
            in_weights = json.loads(f.metadata()["config"])["iteration"]
        in_json = json.loads((run / "last.json").read_text())["iteration"]
        in_state = torch.load(run / "last.state.pt", weights_only=True)["iteration"]
        assert in_weights == in_json == in_state == 4, (in_weights, in_json, in_state)
        assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
