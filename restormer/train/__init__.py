"""Training of the presets of both model families (``restore-train``); see docs/TRAINING.md."""

from restormer_deploy.restormer.train.config import Config, ConfigError, load_config
from restormer_deploy.restormer.train.loop import Hooks, Result, train

__all__ = ["Config", "ConfigError", "Hooks", "Result", "load_config", "train"]
