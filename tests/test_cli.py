"""The command line end to end: train (and resume), eval, sample; bad input exits with a message."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def jaxebm(*args, cwd=ROOT):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", "jaxebm", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_smoke_train_resume_eval_sample(tmp_path):
    wd = tmp_path / "run"
    out = jaxebm("train", "--config", "configs/ffjord.py:smoke", "--workdir", str(wd),
                 "--config.train.num_steps=10")
    assert out.returncode == 0, out.stderr[-3000:]
    out = jaxebm("train", "--config", "configs/ffjord.py:smoke", "--workdir", str(wd))  # resume to 20
    assert out.returncode == 0, out.stderr[-3000:]
    records = [json.loads(line) for line in (wd / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "train"] == [5, 10, 15, 20]
    assert all({"step", "split", "loss", "nfe"} <= set(r) for r in records if r["split"] == "train")
    assert json.loads((wd / "config.json").read_text())["method"] == "ffjord"
    assert (wd / "samples" / "density.png").stat().st_size > 0

    out = jaxebm("eval", "--workdir", str(wd))
    assert out.returncode == 0, out.stderr[-3000:]
    ev = json.loads((wd / "eval.json").read_text())
    assert ev["step"] == 20 and np.isfinite(ev["nll"]) and ev["nfe"] > 0

    for name in ("s.png", "s.npz"):
        out = jaxebm("sample", "--workdir", str(wd), "--num", "64", "--out", str(tmp_path / name))
        assert out.returncode == 0, out.stderr[-3000:]
    assert np.load(tmp_path / "s.npz")["samples"].shape == (64, 2)
    assert (tmp_path / "s.png").stat().st_size > 0


@pytest.mark.parametrize("args, message", [
    (["--config.data.name=nowhere"], "unknown dataset 'nowhere'"),
    (["--config.train.num_steps=-1"], "train.num_steps must be a positive integer"),
    (["--config.model.hiden=(3,)"], "unknown config field 'model.hiden'"),
    (["--config.data.name=power", "--config.data.dir=/nonexistent/maf"], "power"),
])
def test_bad_input_exits_with_a_clear_message(tmp_path, args, message):
    out = jaxebm("train", "--config", "configs/ffjord.py:smoke", "--workdir", str(tmp_path / "w"),
                 *args)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_config_xla_flags_reach_xla_before_it_starts(tmp_path):
    # XLA refuses a flag it does not know when its backend starts: that this run dies of it shows
    # the config's flags were in XLA_FLAGS by then.
    out = jaxebm("train", "--config", "configs/ffjord.py:smoke", "--workdir", str(tmp_path / "w"),
                 "--config.xla_flags=--xla_cpu_jaxebm_no_such_flag=1")
    assert out.returncode != 0 and "xla_cpu_jaxebm_no_such_flag" in out.stderr


def test_nan_in_data_is_refused(tmp_path):
    d = tmp_path / "miniboone"
    d.mkdir()
    data = np.random.default_rng(0).normal(size=(200, 43))
    data[3, 5] = np.nan
    np.save(d / "data.npy", data)
    out = jaxebm("train", "--config", "configs/ffjord.py:miniboone", "--workdir", str(tmp_path / "w"),
                 f"--config.data.dir={tmp_path}")
    assert out.returncode == 2
    assert "NaN" in out.stderr or "nan" in out.stderr


def test_eval_of_a_missing_workdir_fails_clearly(tmp_path):
    out = jaxebm("eval", "--workdir", str(tmp_path / "nothing"))
    assert out.returncode == 2 and "config.json" in out.stderr
