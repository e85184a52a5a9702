"""Metrics of a run: ``metrics.jsonl`` (one JSON object a line), TensorBoard where installed.

Each record is ``{"step": int, "split": "train" | "eval", <name>: float, ...}``. The file is
only appended to, so a resumed or rolled-back run keeps every earlier line.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np


def to_float(value) -> float | None:
    """A JSON-safe float (None for NaN/inf, which JSON cannot hold)."""
    value = float(np.asarray(value))
    return value if math.isfinite(value) else None


class MetricWriter:
    def __init__(self, workdir: Path):
        self.path = Path(workdir) / "metrics.jsonl"
        self._tb = None
        try:  # optional: TensorBoard event files if tensorboardX is installed
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(Path(workdir) / "tensorboard"))
        except ImportError:
            pass

    def write(self, step: int, split: str, metrics: dict) -> dict:
        record = {"step": int(step), "split": split}
        record.update({k: to_float(v) for k, v in metrics.items()})
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in record.items():
                if k not in ("step", "split") and v is not None:
                    self._tb.add_scalar(f"{split}/{k}", v, step)
        return record

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(workdir: Path) -> list[dict]:
    path = Path(workdir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
