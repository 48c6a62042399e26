"""The training loop: optimiser, LR schedule, progressive batches, validation, checkpoints, resume."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from restormer_deploy.restormer.presets import ModelSpec
from restormer_deploy.restormer.train import distributed as ddp
from restormer_deploy.restormer.train.augment import mixup
from restormer_deploy.restormer.train.config import Config, ConfigError
from restormer_deploy.restormer.train.data import IterationBatches, batch_rng
from restormer_deploy.restormer.train.model import build_model, forward, make_loss
from restormer_deploy.restormer.train.schedule import CosineRestarts
from restormer_deploy.restormer.train.setup import Plan, check_patches, prepare
from restormer_deploy.restormer.train.state import (Log, load_state, restore, rng_state, save_checkpoint_set, save_weights,
                                                    write_text)
from restormer_deploy.restormer.train.validate import validate


class Hooks:
    """What the loop reports (the CLI draws a progress bar from it); the default prints nothing."""

    def info(self, message: str) -> None: ...
    def warn(self, message: str) -> None: ...
    def start(self, first: int, total: int) -> None: ...
    def step(self, it: int, loss: float, lr: float) -> None: ...
    def record(self, record: dict) -> None: ...


@dataclass
class Result:
    model: nn.Module
    spec: ModelSpec
    iteration: int
    best: dict | None
    last_val: dict | None


def check_run_dir(run: Path) -> None:
    """run_dir must be a folder, or creatable in a writable one: checked before any data is loaded."""
    existing = next(p for p in (run, *run.parents) if p.exists())
    where = f"run_dir {run}" + ("" if existing == run else f": {existing}")
    if not existing.is_dir():
        raise ConfigError(f"{where} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{where} is not writable")


def resume_path(cfg: Config) -> Path | None:
    """The state to resume from, None for a fresh run; refuses to overwrite an existing run."""
    run = Path(cfg.run_dir)
    check_run_dir(run)
    last = run / "last.state.pt"
    if cfg.resume == "no":
        if last.exists() or (run / "log.jsonl").exists():
            raise ConfigError(f"{run} already holds a run: continue it with --resume (or resume=auto), or set another run_dir")
        return None
    if cfg.resume == "auto":
        return last if last.exists() else None
    return last if cfg.resume == "yes" else Path(cfg.resume)


def _optimizer(cfg: Config, net: nn.Module) -> torch.optim.Optimizer:
    t = cfg.train
    cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    return cls(net.parameters(), lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay)


def _autocast(amp: str, device: torch.device, hooks: Hooks):
    if amp == "fp16" and device.type != "cuda":
        hooks.warn("train.amp=fp16 needs CUDA: training in fp32 (bf16 works on the CPU)")
        amp = "none"
    if amp == "none":
        return contextlib.nullcontext, None
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None
    return (lambda: torch.autocast(device.type, dtype=dtype)), scaler


class _StopFlag:
    """SIGINT/SIGTERM end the run after the current step, with a checkpoint (main thread only)."""

    def __init__(self):
        self.raised, self._old = False, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.raised = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def train(cfg: Config, hooks: Hooks | None = None) -> Result:
    hooks = hooks or Hooks()
    state_file = resume_path(cfg)
    dist = ddp.setup(cfg.train.device)
    try:
        plan = prepare(cfg, hooks.warn if dist.main else (lambda m: None))
        check_patches(cfg.train.patch_sizes, plan)
        state = load_state(state_file, plan.spec) if state_file else None
        with _StopFlag() as stop:
            return _run(cfg, plan, state_file, state, dist, hooks, stop)
    finally:
        ddp.cleanup(dist)


def _run(cfg: Config, plan: Plan, state_file: Path | None, state: dict | None, dist: ddp.Dist, hooks: Hooks,
         stop: _StopFlag) -> Result:
    t, spec, run = cfg.train, plan.spec, Path(cfg.run_dir)
    torch.manual_seed(cfg.seed)
    net = build_model(spec, cfg.init_weights).to(dist.device)
    opt = _optimizer(cfg, net)
    sched = CosineRestarts(opt, t.lr_periods, t.lr_mins, t.lr_restart_weights)
    autocast, scaler = _autocast(t.amp, dist.device, hooks)
    start, best, window = 0, None, {"loss": 0.0, "count": 0}
    if state:
        restore(state_file, state, net, opt, sched, scaler)
        start, best, window = state["iteration"], state["best"], state["window"]
    model = ddp.wrap(net, dist)
    log = Log(run / "log.jsonl")
    last_val = None

    def save(done: int) -> None:
        extra = {"iteration": done, "val": last_val, "train_config": cfg.to_dict()}
        save_checkpoint_set(run / "last.safetensors", net, spec, extra, run / "last.state.pt", {
            "iteration": done, "model": net.state_dict(), "spec": spec.to_json(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "scaler": scaler.state_dict() if scaler else None,
            "rng": rng_state(), "best": best, "window": window, "world": dist.world,
        })

    def validation(done: int) -> None:
        nonlocal best, last_val
        last_val = validate(net, spec, plan.valset, cfg.val.seed)
        if best is None or last_val["val_psnr"] > best["val_psnr"]:
            best = {"iter": done, **last_val}
            if cfg.checkpoint.save_best:
                save_weights(run / "best.safetensors", net, spec, {"iteration": done, "val": last_val, "train_config": cfg.to_dict()})
        rec = {"iter": done, **last_val, "best_psnr": best["val_psnr"], "best_iter": best["iter"]}
        log.append(rec)
        hooks.record(rec)

    if dist.main:
        run.mkdir(parents=True, exist_ok=True)
        write_text(run / "config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")
        if state:
            log.truncate(start)
        else:  # resume=auto before the first checkpoint: start the log afresh
            write_text(log.path, "")
        event = {"event": "resume" if state else "start", "iter": start, "model": spec.name, "world": dist.world,
                 "device": str(dist.device), **plan.summary}
        log.append(event)
        hooks.info(f"{spec.name}: {plan.summary['train_images']} training images "
                   f"({plan.summary['unreadable']} unreadable skipped), {plan.summary['val_images']} validation images, "
                   f"{dist.world} process(es) on {dist.device}" + (f", resuming at iteration {start}" if state else ""))
    end = t.iterations
    loader = DataLoader(plan.trainset, batch_sampler=IterationBatches(plan.stages, start, end, dist.rank, dist.world),
                        num_workers=cfg.data.workers, pin_memory=dist.device.type == "cuda")
    loss_fn = make_loss(t.loss, t.charbonnier_eps)
    net.train()
    hooks.start(start, end)
    tick, ticks_from = time.perf_counter(), start
    done = start
    for it, (lq, gt, kernel) in zip(range(start, end), loader):
        lq, gt = lq.to(dist.device, non_blocking=True), gt.to(dist.device, non_blocking=True)
        kernel = kernel.to(dist.device) if spec.needs_kernel else None
        if cfg.data.mixup:
            rng = batch_rng(cfg.seed, it, dist.rank)
            if rng.random() < cfg.data.mixup:
                lq, gt = mixup(lq, gt, rng, cfg.data.mixup_beta)
        with autocast():
            out = forward(model, spec, lq, kernel)
        loss = loss_fn(out.float(), gt)
        opt.zero_grad(set_to_none=True)
        if scaler:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
        else:
            loss.backward()
        if t.grad_clip:
            nn.utils.clip_grad_norm_(net.parameters(), t.grad_clip)
        if scaler:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        lr = opt.param_groups[0]["lr"]
        sched.step()
        done = it + 1
        value = float(loss.detach())
        window["loss"] += value
        window["count"] += 1
        if dist.main:
            hooks.step(done, value, lr)
        if done % t.log_every == 0 or done == end:
            mean = ddp.mean(window["loss"] / window["count"], dist)
            now = time.perf_counter()
            patch, batch = plan.stages.at(it)
            rec = {"iter": done, "loss": mean, "lr": lr, "it_s": (done - ticks_from) / (now - tick),
                   "patch": patch, "batch": batch * dist.world}
            tick, ticks_from, window = now, done, {"loss": 0.0, "count": 0}
            if dist.main:
                log.append(rec)
                hooks.record(rec)
        if plan.valset and (done % cfg.val.every == 0 or done == end):
            if dist.main:
                validation(done)
            ddp.barrier(dist)
        if dist.world == 1:
            stopping = stop.raised
        else:  # every process must agree on stopping, checked at logging steps
            stopping = done % t.log_every == 0 and ddp.broadcast(stop.raised, dist)
        if done % cfg.checkpoint.every == 0 or done == end or stopping:
            if dist.main:
                save(done)
            ddp.barrier(dist)
        if stopping:
            if dist.main:
                log.append({"event": "interrupted", "iter": done})
            raise KeyboardInterrupt
    return Result(net, spec, done, best, last_val)
