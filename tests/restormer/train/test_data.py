"""restormer_deploy.restormer.train data (data, augment, sources, setup) against independent references."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from restormer_deploy.restormer.train import config as C
from restormer_deploy.restormer.train.augment import MODES, augment, inverse
from restormer_deploy.restormer.train.config import load_config
from restormer_deploy.restormer.train.data import IterationBatches, Synthetic, TrainSet, load_kernels
from restormer_deploy.restormer.train.schedule import Stages
from restormer_deploy.restormer.train.setup import prepare
from restormer_deploy.restormer.train.sources import SKIMAGE_PHOTOS, source_files


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


def test_samples_deterministic_per_seed(tmp_path, smooth_images):
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


def test_workers_do_not_change_the_data(tmp_path, smooth_images):
    folder = smooth_images(tmp_path / "d", n=3, size=40)
    ts = _trainset(folder, 0, sigma=(0, 50))
    stages = Stages([16, 24], [2, 3], [2, 2])
    runs = [list(DataLoader(ts, batch_sampler=IterationBatches(stages, 0, 4), num_workers=w)) for w in (0, 2)]
    for x, y in zip(*runs):
        assert all(torch.equal(p, q) for p, q in zip(x, y))
    assert [b[0].shape[-1] for b in runs[0]] == [16, 16, 24, 24] and [b[0].shape[0] for b in runs[0]] == [2, 2, 3, 3]


def test_blur_and_sr_degradations(tmp_path, smooth_images):
    folder = smooth_images(tmp_path / "d", n=2, size=40)
    k = np.zeros((5, 5), np.float32)
    k[2, 1:4] = 1 / 3
    lq, gt, kernel = _trainset(folder, kind="blur", kernels=[k], sigma=(0, 0))[(1, 32)]
    assert torch.equal(kernel[0], torch.from_numpy(k))
    ref = sum(torch.roll(gt, s, dims=2) for s in (-1, 0, 1)) / 3  # horizontal box blur, wrap-around
    assert torch.allclose(lq, ref, atol=1e-5)
    lq, gt, _ = _trainset(folder, kind="sr", scale=4, sigma=(0, 0))[(1, 32)]
    assert lq.shape == (3, 8, 8) and gt.shape == (3, 32, 32)


def test_paired_crops_aligned(tmp_path, smooth_images):
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


def test_unreadable_images_skipped_and_counted(tmp_path, smooth_images):
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


def test_validation_files_held_out(tmp_path, smooth_images):
    folder = smooth_images(tmp_path / "d", n=4, size=40)
    cfg = load_config(None, [f"data.clean=[{folder}]", f"val.data=[{folder / 'img1.png'}]"])
    plan = prepare(cfg, print)
    assert plan.summary["train_images"] == 3 and plan.summary["held_out"] == 1 and plan.valset.names == ["img1.png"]


def test_skimage_source_is_offline():
    files = source_files(["skimage:", "skimage:camera"])
    assert [f.stem for f in files] == [*SKIMAGE_PHOTOS, "camera"] and all(f.is_file() for f in files)
    with pytest.raises(FileNotFoundError, match="nosuch"):
        source_files(["skimage:nosuch"])


def test_kernel_files_v5_and_v73(need_shared):
    assert len(load_kernels([str(need_shared("data", "kernels", "kernels_12.mat"))])) == 12
    levin = load_kernels([str(need_shared("data", "kernels", "levin09", "Levin09.mat"))])
    assert len(levin) == 8 and levin[0].dtype == np.float32
    assert len(load_kernels([str(need_shared("data", "kernels", "levin09", "Levin09.mat")) + ":3"])) == 1
    assert len(load_kernels([str(need_shared("data", "kernels", "conversenet"))])) == 5


def test_default_stage1_config_data(need_shared, repo_root):
    need_shared("data", "train", "Train400")
    cfg = load_config(repo_root / "configs" / "default-stage1.yaml", ["data.cache=false"])
    plan = prepare(cfg, print)
    s = plan.summary
    assert s["val_images"] == 3 and s["held_out"] == 3 and s["unreadable"] == 0
    assert s["train_images"] == 5 + 14 + len(SKIMAGE_PHOTOS) + 400 - 3
    lq, gt, _ = plan.trainset[(7, 64)]
    assert lq.shape == gt.shape == (3, 64, 64)


def test_default_config_data_is_colour_only(need_shared, repo_root):
    cbsd432 = need_shared("data", "train", "CBSD432")
    cfg = load_config(repo_root / "configs" / "default.yaml", ["data.cache=false"])
    assert cfg.data.grey_to_rgb is False
    plan = prepare(cfg, print)
    s = plan.summary
    photos = len([f for f in cbsd432.iterdir() if f.suffix.lower() in (".jpg", ".png")])
    # 16 CBSD432 photos held out for validation; Set14's grey bridge.bmp is skipped, not replicated
    assert s["val_images"] == 16 and s["held_out"] == 16 and s["unreadable"] == 0
    assert s["train_images"] == photos - 16 + 5 + 14 - 1 + len(SKIMAGE_PHOTOS)
    assert not any("CBSD68" in str(p) for p in cfg.data.clean + cfg.val.data)
    lq, gt, _ = plan.trainset[(7, 128)]
    assert lq.shape == gt.shape == (3, 128, 128)
