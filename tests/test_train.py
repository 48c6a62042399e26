"""restore-train building blocks against independent references: config, data, schedule, checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from restormer.train import config as C
from restormer.train.augment import MODES, augment, inverse
from restormer.train.config import ConfigError, load_config
from restormer.train.data import IterationBatches, Synthetic, TrainSet, load_kernels
from restormer.train.schedule import CosineRestarts, Stages, lr_at
from restormer.train.setup import prepare
from restormer.train.sources import SKIMAGE_PHOTOS, source_files
from restormer.train import state as S
from conftest import need_shared
from train_helpers import smooth_images, write_config

# ----------------------------------------------------------------------------- config


def test_yaml_and_toml_with_overrides(tmp_path):
    y = write_config(tmp_path / "c.yaml", {"model": "converse-dncnn", "data": {"clean": ["a"], "sigma": 25},
                                           "train": {"lr": "3e-4"}})
    cfg = load_config(y, ["train.lr=1e-4", "data.sigma=[0,50]", "model_config.num_blocks=3", "val.crop=null",
                          "data.clean=[${shared}/x, skimage:]", "resume=auto"])
    assert cfg.train.lr == 1e-4 and isinstance(cfg.train.lr, float)
    assert cfg.data.sigma == [0.0, 50.0] and cfg.model_config == {"num_blocks": 3} and cfg.val.crop is None
    assert cfg.data.clean[0].endswith("/x") and "${" not in cfg.data.clean[0] and cfg.data.clean[1] == "skimage:"
    assert cfg.resume == "auto"
    t = tmp_path / "c.toml"
    t.write_text('model = "default"\n[data]\nclean = ["a"]\nsigma = 15\n[train]\nlr = 2e-4\nbatch_sizes = [4, 2, 1, 1, 1, 1]\n')
    cfg = load_config(t)
    assert cfg.data.sigma == [15.0] and cfg.train.lr == 2e-4 and cfg.train.batch_sizes[0] == 4
    # YAML reads 3e-4 as a float here (PyYAML alone would give the string '3e-4')
    assert load_config(y).train.lr == 3e-4
    # The Restormer recipe is the default.
    d = load_config(None, ["data.clean=[a]"]).train
    assert (d.optimizer, d.lr, d.betas, d.weight_decay, d.loss, d.iterations) == ("adamw", 3e-4, [0.9, 0.999], 1e-4, "l1", 300_000)
    assert d.lr_periods == [92_000, 208_000] and d.lr_mins == [3e-4, 1e-6] and d.stage_iters[0] == 92_000


@pytest.mark.parametrize("override, needle", [
    ("train.lrr=1", "train.lrr"), ("bogus=1", "bogus"), ("data.clean.x=1", "data.clean is not a section"),
    ("train.lr=fast", "train.lr"), ("train.amp=fp8", "train.amp"), ("model=nope", "nope"),
])
def test_bad_keys_and_values(override, needle):
    with pytest.raises(ConfigError) as err:
        load_config(None, ["data.clean=[a]", override])
    assert needle in str(err.value)


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["data.clean=[a]", "train.lrr=1"])
    assert "valid keys" in str(err.value) and "train.lr," in str(err.value) and "train.stage_iters" in str(err.value)
    assert "data.sigma" in C.valid_keys() and "checkpoint.every" in C.valid_keys()


def test_model_config_keys_checked(tmp_path):
    cfg = load_config(None, ["data.clean=[a]", "model_config.dimm=8"])
    with pytest.raises(ConfigError, match="dimm.*valid keys.*dim"):
        prepare(cfg, print)


# ----------------------------------------------------------------------------- data


def test_augment_modes_distinct_and_invertible():
    x = np.arange(4 * 5 * 2).reshape(4, 5, 2)  # non-square: rotations change the shape
    outs = [augment(x, m) for m in range(MODES)]
    assert len({(o.shape, o.tobytes()) for o in outs}) == 8
    assert np.array_equal(outs[0], x)
    for m, o in enumerate(outs):
        assert np.array_equal(inverse(o, m), x)
    sq = np.arange(9).reshape(3, 3)
    assert np.array_equal(augment(sq, 1), np.array([[2, 5, 8], [1, 4, 7], [0, 3, 6]]))  # 90° counter-clockwise
    assert np.array_equal(augment(sq, 4), sq[::-1])


def _trainset(folder, seed=0, sigma=(25, 25), kind="noise", kernels=(), scale=1, **data):
    cfg = C.DataConfig(clean=[str(folder)], sigma=list(sigma), **data)
    images = [np.array(Image.open(p)) for p in sorted(folder.iterdir())]
    return TrainSet(images, cfg, seed, 3, scale, Synthetic(kind, list(sigma), list(kernels), scale))


def test_samples_deterministic_per_seed(tmp_path):
    folder = smooth_images(tmp_path / "d", n=4, size=40)
    a, b, c = _trainset(folder, 0), _trainset(folder, 0), _trainset(folder, 1)
    for key in [(0, 16), (5, 24), (13, 16)]:
        for x, y in zip(a[key], b[key]):
            assert torch.equal(x, y)
    assert not torch.equal(a[(5, 16)][0], c[(5, 16)][0])
    assert not torch.equal(a[(5, 16)][0], a[(6, 16)][0])
    # fixed sigma: the residual is noise of that strength
    lq, gt, _ = _trainset(folder, sigma=(25, 25))[(2, 32)]
    assert float((lq - gt).std()) == pytest.approx(25 / 255, rel=0.1)
    clean_lq, clean_gt, _ = _trainset(folder, sigma=(0, 0))[(2, 32)]
    assert torch.equal(clean_lq, clean_gt)
    # blind range: per-sample sigma uniform in [lo, hi]
    stds = [float((s[0] - s[1]).std()) * 255 for s in (_trainset(folder, sigma=(10, 20))[(k, 32)] for k in range(12))]
    assert 9 < min(stds) and max(stds) < 21 and max(stds) - min(stds) > 3


def test_workers_do_not_change_the_data(tmp_path):
    folder = smooth_images(tmp_path / "d", n=3, size=40)
    ts = _trainset(folder, 0, sigma=(0, 50))
    stages = Stages([16, 24], [2, 3], [2, 2])
    runs = [list(DataLoader(ts, batch_sampler=IterationBatches(stages, 0, 4), num_workers=w)) for w in (0, 2)]
    for x, y in zip(*runs):
        assert all(torch.equal(p, q) for p, q in zip(x, y))
    assert [b[0].shape[-1] for b in runs[0]] == [16, 16, 24, 24] and [b[0].shape[0] for b in runs[0]] == [2, 2, 3, 3]


def test_blur_and_sr_degradations(tmp_path):
    folder = smooth_images(tmp_path / "d", n=2, size=40)
    k = np.zeros((5, 5), np.float32)
    k[2, 1:4] = 1 / 3
    lq, gt, kernel = _trainset(folder, kind="blur", kernels=[k], sigma=(0, 0))[(1, 32)]
    assert torch.equal(kernel[0], torch.from_numpy(k))
    ref = sum(torch.roll(gt, s, dims=2) for s in (-1, 0, 1)) / 3  # horizontal box blur, wrap-around
    assert torch.allclose(lq, ref, atol=1e-5)
    lq, gt, _ = _trainset(folder, kind="sr", scale=4, sigma=(0, 0))[(1, 32)]
    assert lq.shape == (3, 8, 8) and gt.shape == (3, 32, 32)


def test_paired_crops_aligned(tmp_path):
    gt_dir, lq_dir = smooth_images(tmp_path / "gt", n=3, size=40), tmp_path / "lq"
    lq_dir.mkdir()
    for p in gt_dir.iterdir():  # the LQ image is the negative of its GT, stored as JPEG-free PNG
        Image.fromarray(255 - np.array(Image.open(p))).save(lq_dir / p.name)
    (gt_dir / "lonely.png").write_bytes((gt_dir / "img0.png").read_bytes())
    warnings = []
    cfg = load_config(None, [f"data.lq=[{lq_dir}]", f"data.gt=[{gt_dir}]", f"run_dir={tmp_path / 'r'}"])
    plan = prepare(cfg, warnings.append)
    assert plan.summary["train_images"] == 3 and any("no match" in w for w in warnings)
    for k in range(6):
        lq, gt, _ = plan.trainset[(k, 24)]
        assert torch.allclose(lq, 1 - gt, atol=1e-6)


def test_unreadable_images_skipped_and_counted(tmp_path):
    folder = smooth_images(tmp_path / "d", n=3, size=40)
    (folder / "broken.png").write_bytes(b"not an image")
    Image.fromarray(np.full((40, 40), 7, np.uint8)).save(folder / "grey.png")
    warnings = []
    cfg = load_config(None, [f"data.clean=[{folder}]"])
    plan = prepare(cfg, warnings.append)
    assert plan.summary["unreadable"] == 1 and plan.summary["grey_skipped"] == 1 and plan.summary["train_images"] == 3
    assert any("broken.png" in w for w in warnings) and any("grey_to_rgb" in w for w in warnings)
    plan = prepare(load_config(None, [f"data.clean=[{folder}]", "data.grey_to_rgb=true"]), warnings.append)
    assert plan.summary["train_images"] == 4


def test_validation_files_held_out(tmp_path):
    folder = smooth_images(tmp_path / "d", n=4, size=40)
    cfg = load_config(None, [f"data.clean=[{folder}]", f"val.data=[{folder / 'img1.png'}]"])
    plan = prepare(cfg, print)
    assert plan.summary["train_images"] == 3 and plan.summary["held_out"] == 1 and plan.valset.names == ["img1.png"]


def test_skimage_source_is_offline():
    files = source_files(["skimage:", "skimage:camera"])
    assert [f.stem for f in files] == [*SKIMAGE_PHOTOS, "camera"] and all(f.is_file() for f in files)
    with pytest.raises(FileNotFoundError, match="nosuch"):
        source_files(["skimage:nosuch"])


def test_kernel_files_v5_and_v73():
    assert len(load_kernels([str(need_shared("data", "kernels", "kernels_12.mat"))])) == 12
    levin = load_kernels([str(need_shared("data", "kernels", "levin09", "Levin09.mat"))])
    assert len(levin) == 8 and levin[0].dtype == np.float32
    assert len(load_kernels([str(need_shared("data", "kernels", "levin09", "Levin09.mat")) + ":3"])) == 1
    assert len(load_kernels([str(need_shared("data", "kernels", "conversenet"))])) == 5


def test_default_config_data():
    need_shared("data", "train", "Train400")
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "default.yaml", ["data.cache=false"])
    plan = prepare(cfg, print)
    s = plan.summary
    assert s["val_images"] == 3 and s["held_out"] == 3 and s["unreadable"] == 0
    assert s["train_images"] == 5 + 14 + len(SKIMAGE_PHOTOS) + 400 - 3
    lq, gt, _ = plan.trainset[(7, 64)]
    assert lq.shape == gt.shape == (3, 64, 64)


# ----------------------------------------------------------------------------- schedule


def _cosine(t, top, bottom, period):  # written out independently of the implementation
    return bottom + (top - bottom) * (1 + math.cos(math.pi * t / period)) / 2


def test_lr_schedule_closed_form():
    args = (3e-4, [92_000, 208_000], [3e-4, 1e-6])
    assert lr_at(0, *args) == pytest.approx(3e-4) and lr_at(91_999, *args) == pytest.approx(3e-4)
    assert lr_at(92_000, *args) == pytest.approx(3e-4)
    assert lr_at(92_000 + 104_000, *args) == pytest.approx((3e-4 + 1e-6) / 2)
    for it in (100_000, 150_000, 250_000, 299_999):
        assert lr_at(it, *args) == pytest.approx(_cosine(it - 92_000, 3e-4, 1e-6, 208_000), rel=1e-12)
    assert lr_at(300_000, *args) == pytest.approx(1e-6) and lr_at(400_000, *args) == pytest.approx(1e-6)
    # a restart with a lower weight
    assert lr_at(15, 1.0, [10, 10], [0.1, 0.0], [1.0, 0.5]) == pytest.approx(_cosine(5, 0.5, 0.0, 10))


def test_scheduler_drives_the_optimizer():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1e-3)
    sched = CosineRestarts(opt, [4, 6], [1e-3, 1e-5])
    seen = []
    for _ in range(12):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([1e-3] * 5 + [_cosine(t, 1e-3, 1e-5, 6) for t in range(1, 6)] + [1e-5] * 2)
    state = sched.state_dict()
    torch.save(state, "/dev/null")  # plain types only


def test_resumed_scheduler_follows_an_extended_schedule():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1e-3)
    sched = CosineRestarts(opt, [4, 6], [1e-3, 1e-5])
    for _ in range(10):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-5)
    # continue the run with one more cycle at half the base LR (config wins over the saved schedule)
    opt2 = torch.optim.AdamW([p], lr=1e-3)
    longer = CosineRestarts(opt2, [4, 6, 8], [1e-3, 1e-5, 1e-6], [1.0, 1.0, 0.5])
    longer.load_state_dict(sched.state_dict())
    assert longer.last_epoch == 10 and longer.periods == [4, 6, 8]
    seen = []
    for _ in range(8):
        opt2.step()
        longer.step()
        seen.append(opt2.param_groups[0]["lr"])
    assert seen == pytest.approx([_cosine(t, 5e-4, 1e-6, 8) for t in range(1, 8)] + [1e-6])


def test_progressive_stages_switch_at_milestones():
    st = Stages([128, 160, 192], [8, 5, 4], [10, 20, 5])
    assert [st.at(i) for i in (0, 9, 10, 29, 30, 34, 35, 99)] == [
        (128, 8), (128, 8), (160, 5), (160, 5), (192, 4), (192, 4), (192, 4), (192, 4)]
    for it in range(0, 60, 7):
        assert st.samples_before(it) == sum(st.at(i)[1] for i in range(it))


def test_ranks_shard_the_global_batch():
    st = Stages([16, 24], [2, 3], [3, 3])
    single = [k for b in IterationBatches(Stages([16, 24], [4, 6], [3, 3]), 0, 6) for k, _ in b]
    ranks = [[b for b in IterationBatches(st, 0, 6, r, 2)] for r in (0, 1)]
    merged = [k for b0, b1 in zip(*ranks) for k, _ in b0 + b1]
    assert merged == single  # two processes with batch b see what one process with batch 2b sees
    resumed = [b for b in IterationBatches(st, 4, 6, 1, 2)]
    assert resumed == ranks[1][4:]


# ----------------------------------------------------------------------------- checkpoints


def test_atomic_writes_keep_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.state.pt"
    S.save_state(path, {"iteration": 1, "x": torch.ones(3)})
    real_save = torch.save

    def dying_save(obj, f, *a, **k):
        Path(f).write_bytes(b"half a checkpoi")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(OSError):
        S.save_state(path, {"iteration": 2, "x": torch.zeros(3)})
    monkeypatch.setattr(torch, "save", real_save)
    state = torch.load(path, weights_only=True)
    assert state["iteration"] == 1 and torch.equal(state["x"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.state.pt"]  # no temporary left behind


def test_atomic_weights_keep_the_previous_file(tmp_path, monkeypatch):
    from restormer import checkpoints
    from restormer.presets import PRESETS

    spec = PRESETS["converse-dncnn"]
    net = torch.nn.Conv2d(1, 1, 1)
    S.save_weights(tmp_path / "w.safetensors", net, spec, {"iteration": 1})

    def dying(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\x00" * 10)
        raise KeyboardInterrupt  # killed mid-write

    monkeypatch.setattr(checkpoints, "save_file", dying)
    with pytest.raises(KeyboardInterrupt):
        S.save_weights(tmp_path / "w.safetensors", torch.nn.Conv2d(1, 1, 1), spec, {"iteration": 2})
    assert checkpoints.read_checkpoint_config(tmp_path / "w.safetensors")["iteration"] == 1
    assert torch.equal(checkpoints.read_state_dict(tmp_path / "w.safetensors")["weight"], net.weight.detach())
    assert len(list(tmp_path.iterdir())) == 2
