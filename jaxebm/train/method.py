"""The face every method shows the harness: build it from a config, and `jaxebm train` runs it.

A method module ``jaxebm/methods/<name>.py`` defines ``build(config) -> Method``. The harness
owns everything else: keys, jit and donation, sharding, checkpoints, metrics, resumption and
recovery from divergence. A method therefore never sees a step counter or a workdir inside its
step; it sees ``(state, batch, key)`` and returns ``(state, metrics)``.

State is any pytree of arrays (parameters, optimizer states, replay buffers, control-variate
parameters); it must hold no PRNG keys, because keys are derived from the seed and the step.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any, Callable

import jax
import ml_collections
import numpy as np

State = Any
Batch = dict[str, Any]
Metrics = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class Method:
    """What a method gives the harness.

    Attributes:
      init: ``key -> state``, the initial training state (a pytree of arrays).
      train_step: pure ``(state, batch, key) -> (state, metrics)``; the harness jits it with the
        state donated. ``metrics`` are scalars and must include ``loss``.
      evaluate: ``(state, key) -> {name: float}`` on held-out data; may run jitted helpers.
      sample: ``(state, key, num) -> np.ndarray`` of ``num`` samples in data space.
      data: a ``jaxebm.data`` dataset with ``train_batch(step)``, or None for data-free methods.
      write_figures: optional ``(state, key, directory) -> [paths]`` writing PNGs.
    """

    init: Callable[[jax.Array], State]
    train_step: Callable[[State, Batch, jax.Array], tuple[State, Metrics]]
    evaluate: Callable[[State, jax.Array], dict[str, float]]
    sample: Callable[[State, jax.Array, int], np.ndarray]
    data: Any = None
    write_figures: Callable[[State, jax.Array, Path], list[Path]] | None = None


def build_method(config: ml_collections.ConfigDict) -> Method:
    """Imports ``jaxebm.methods.<config.method>`` and builds it; unknown names fail clearly.

    A dotted name (``mypackage.my_method``) is imported as is, so research code can plug its
    own method into the same harness.
    """
    name = config.method
    module_name = name if "." in name else f"jaxebm.methods.{name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise
        raise ValueError(f"config.method={name!r}: no module {module_name}") from None
    return module.build(config)
