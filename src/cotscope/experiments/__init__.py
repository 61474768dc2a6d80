"""Experiments: one plug-in each (see `Experiment`); the built-in ones load on first use."""

from .base import (
    DEFAULT_EXPERIMENTS,
    EXPERIMENTS,
    Context,
    Experiment,
    NoOptions,
    experiment_class,
    get_experiments,
    register_experiment,
    same_answer,
)

__all__ = [
    "DEFAULT_EXPERIMENTS",
    "EXPERIMENTS",
    "Context",
    "Experiment",
    "NoOptions",
    "experiment_class",
    "get_experiments",
    "register_experiment",
    "same_answer",
]
