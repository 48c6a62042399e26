"""The model to train: a preset's ModelSpec with ``model_config`` overrides, its network and the loss."""

from __future__ import annotations

import dataclasses
import inspect

import torch
from torch import Tensor, nn

from restormer_deploy.restormer.checkpoints import WeightsError, load_weights, read_state_dict
from restormer_deploy.restormer.presets import ARCHITECTURES, PRESETS, ModelSpec, check_model_config
from restormer_deploy.restormer.train.config import Config, ConfigError

# Constructor arguments that set the (input, output) channel counts of each architecture.
_CHANNEL_ARGS = {
    "restormer": ("inp_channels", "out_channels"),
    "converse-dncnn": ("in_channels", "in_channels"),
    "converse-srresnet": ("in_channels", "out_channels"),
    "conversenet": ("image_channels", "image_channels"),
}


def model_spec(cfg: Config) -> ModelSpec:
    """The preset's spec with ``cfg.model_config`` merged into its constructor arguments."""
    base = PRESETS[cfg.model]
    cls = ARCHITECTURES[base.architecture]
    params = inspect.signature(cls.__init__).parameters
    valid = [n for n in params if n != "self"]
    unknown = sorted(set(cfg.model_config) - set(valid))
    if unknown:
        raise ConfigError(f"unknown model_config key(s) {unknown} for {base.architecture}; valid keys: {', '.join(valid)}")
    config = {**base.config, **cfg.model_config}
    try:
        check_model_config(base.architecture, config, prefix="model_config.")
    except WeightsError as exc:
        raise ConfigError(str(exc)) from None
    in_ch, out_ch = base.in_channels, base.out_channels
    if base.architecture in _CHANNEL_ARGS:
        a, b = _CHANNEL_ARGS[base.architecture]
        in_ch = config.get(a, params[a].default)
        out_ch = config.get(b, params[b].default)
    spec = dataclasses.replace(base, config=config, in_channels=in_ch, out_channels=out_ch, weights=None)
    if spec.in_channels != spec.out_channels:
        raise ConfigError(f"{spec.name} maps {spec.in_channels} to {spec.out_channels} channels; "
                          "restore-train trains models whose output has the input's channels")
    return spec


def build_model(spec: ModelSpec, init_weights: str | None = None) -> nn.Module:
    try:
        net = ARCHITECTURES[spec.architecture](**spec.config)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cannot build {spec.name} with model_config {spec.config}: {exc}") from None
    if init_weights:
        load_weights(net, read_state_dict(init_weights), source=init_weights)
    return net


def forward(net: nn.Module, spec: ModelSpec, lq: Tensor, kernel: Tensor | None) -> Tensor:
    return net(lq, kernel) if spec.needs_kernel else net(lq)


def make_loss(name: str, eps: float = 1e-3):
    if name == "l1":
        return nn.L1Loss()
    if name == "mse":
        return nn.MSELoss()

    def charbonnier(out: Tensor, gt: Tensor) -> Tensor:
        return torch.sqrt((out - gt) ** 2 + eps * eps).mean()

    return charbonnier
