"""restormer_deploy.restormer.train.schedule: cosine restarts in closed form, resumed schedules, progressive stages and
the global batch over ranks."""

from __future__ import annotations

import math

import pytest
import torch

from restormer_deploy.restormer.train.data import IterationBatches
from restormer_deploy.restormer.train.schedule import CosineRestarts, Stages, lr_at


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
