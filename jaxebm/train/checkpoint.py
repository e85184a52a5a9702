"""Checkpoints: the one module that talks to orbax.

A checkpoint holds the training state (any pytree of arrays) and a small JSON record (the step,
the number of rollbacks so far). Orbax writes each step into a temporary directory and renames
it when complete, so an interrupted save never replaces a good checkpoint.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpoints:
    """Keeps the last ``keep`` checkpoints of a workdir's ``checkpoints/`` directory."""

    def __init__(self, directory: Path, keep: int = 3):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=False
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any, record: dict) -> None:
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), record=ocp.args.JsonSave(record))
        self._manager.save(step, args=args, force=True)
        self._manager.wait_until_finished()

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restores ``step`` (default the latest) into the structure/shardings of ``abstract_state``."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        args = ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), record=ocp.args.JsonRestore()
        )
        restored = self._manager.restore(step, args=args)
        return restored.state, dict(restored.record)

    def record(self, step: int) -> dict:
        """The JSON record saved with ``step`` (without reading the state)."""
        restored = self._manager.restore(step, args=ocp.args.Composite(record=ocp.args.JsonRestore()))
        return dict(restored.record)

    def set_aside(self, step: int, destination: Path) -> Path:
        """Moves checkpoint ``step`` out of this directory into ``destination`` (never deleted).

        The manager then no longer sees it, so training from an older step can save there again.
        """
        source = self.directory / str(step)
        if not source.is_dir():
            raise FileNotFoundError(f"checkpoint {step} not found at {source}")
        destination.mkdir(parents=True, exist_ok=True)
        target = destination / str(step)
        n = 1
        while target.exists():
            n += 1
            target = destination / f"{step}.{n}"
        shutil.move(str(source), str(target))
        self._manager.reload()
        return target

    def close(self) -> None:
        self._manager.close()


def abstract_like(state: Any, sharding: jax.sharding.Sharding) -> Any:
    """ShapeDtypeStructs of ``state`` (arrays or structs) placed with ``sharding``."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), state)
