"""The harness: exact resumption, divergence handling, rollback, config checks, devices."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from fixtures import toy_method as _toy_method
from jaxebm.train import config as config_lib
from jaxebm.train import loop
from jaxebm.train.checkpoint import Checkpoints

ROOT = Path(__file__).resolve().parents[2]


def _w(workdir):
    _, _, state, step = loop.restore(workdir)
    return np.asarray(state["w"]), step


def test_resume_gives_the_same_parameters_as_one_run(tmp_path):
    cfg = _toy_method.get_config()
    cfg.train.num_steps = 20
    loop.train(cfg, tmp_path / "once")
    cfg_half = _toy_method.get_config()
    cfg_half.train.num_steps = 10
    loop.train(cfg_half, tmp_path / "twice")
    assert _w(tmp_path / "twice")[1] == 10
    loop.train(cfg, tmp_path / "twice")  # resumes from step 10
    w1, s1 = _w(tmp_path / "once")
    w2, s2 = _w(tmp_path / "twice")
    assert s1 == s2 == 20
    np.testing.assert_array_equal(w1, w2)
    steps = [r["step"] for r in map(json.loads, (tmp_path / "twice/metrics.jsonl").read_text().splitlines())
             if r["split"] == "train"]
    assert steps == [5, 10, 15, 20]


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = _toy_method.get_config(nan_at_step=7)
    with pytest.raises(loop.Diverged, match="diverged at step 7.*Last good checkpoint: step 5"):
        loop.train(cfg, tmp_path)
    ckpts = Checkpoints(tmp_path / "checkpoints")
    assert ckpts.all_steps() == [5]
    w, step = _w(tmp_path)
    assert step == 5 and np.all(np.isfinite(w))


def test_rollback_restores_with_a_new_seed_and_scaled_config(tmp_path):
    cfg = _toy_method.get_config(nan_at_step=7)
    cfg.train.max_rollbacks = 2
    cfg.train.rollback_scale = "model.nan_at_step:100,optim.learning_rate:0.5"
    results = loop.train(cfg, tmp_path)
    assert np.isfinite(results["mse"])
    log = [json.loads(line) for line in (tmp_path / "rollbacks.jsonl").read_text().splitlines()]
    assert [r["rollback"] for r in log] == [1] and log[0]["restored_step"] == 5
    assert Checkpoints(tmp_path / "checkpoints").record(20)["rollbacks"] == 1


def test_a_relapse_sets_the_restored_checkpoint_aside_and_goes_further_back(tmp_path):
    # sick from step 4, NaN from step 7: the step-5 checkpoint passes every check but is sick
    cfg = _toy_method.get_config(sick_at_step=4)
    cfg.train.max_rollbacks = 2
    cfg.train.rollback_scale = "model.sick_at_step:100"
    results = loop.train(cfg, tmp_path)
    assert np.isfinite(results["mse"])
    log = [json.loads(line) for line in (tmp_path / "rollbacks.jsonl").read_text().splitlines()]
    assert [r["restored_step"] for r in log] == [5, 0]  # the sick 5 relapses, then a fresh start
    assert "rejected" not in log[0] and log[1]["rejected"] == "rejected_checkpoints/5"
    rejected = Checkpoints(tmp_path / "rejected_checkpoints")
    assert rejected.all_steps() == [5] and rejected.record(5) == {"step": 5, "rollbacks": 0}
    _, _, state, step = loop.restore(tmp_path)
    assert step == 20 and int(state["sick_since"]) == -1
    assert Checkpoints(tmp_path / "checkpoints").record(20)["rollbacks"] == 2


def test_a_metric_beyond_its_bound_is_a_divergence(tmp_path):
    cfg = _toy_method.get_config()
    cfg.train.metric_bounds = "w_norm:0.5"  # |w| grows towards |w_true| = 0.67
    with pytest.raises(loop.Diverged, match=r"diverged at step (\d+).*metric_bounds='w_norm:0.5'"):
        loop.train(cfg, tmp_path)
    w, step = _w(tmp_path)
    assert step > 0 and np.linalg.norm(w) <= 0.5  # the last good checkpoint is within the bound
    # A misspelt metric fails before anything is written: no new workdir, and a resumed run's
    # config.json keeps the bound it ran with.
    cfg.train.metric_bounds = "w_nrom:0.5"
    for workdir in (tmp_path / "typo", tmp_path):
        with pytest.raises(ValueError, match=r"names \['w_nrom'\], not among .*'w_norm'"):
            loop.train(cfg, workdir)
    assert not (tmp_path / "typo").exists()
    assert json.loads((tmp_path / "config.json").read_text())["train"]["metric_bounds"] == "w_norm:0.5"


def test_resume_with_a_different_config_is_refused(tmp_path):
    cfg = _toy_method.get_config()
    cfg.train.num_steps = 5
    loop.train(cfg, tmp_path)
    other = _toy_method.get_config()
    other.optim.learning_rate = 0.5
    with pytest.raises(ValueError, match="optim.learning_rate"):
        loop.train(other, tmp_path)


@pytest.mark.parametrize("override, message", [
    ("train.num_steps=0", "train.num_steps must be a positive integer"),
    ("data.batch_size=-3", "data.batch_size must be a positive integer"),
    ("train.rollback_scale=nope", "must look like field.path:factor"),
    ("train.rollback_scale=model.missing:2", "unknown field 'model.missing'"),
    ("xla_flags=xla_cpu_foo", "xla_flags must be a string of --xla_"),
    ("train.metric_bounds=energy_gap", "must look like metric:bound"),
    ("train.metric_bounds=energy_gap:-1", "bound of 'energy_gap' must be > 0"),
])
def test_bad_config_values_fail_before_training(tmp_path, override, message):
    cfg = _toy_method.get_config()
    cfg.lock()
    config_lib.apply_override(cfg, override)
    with pytest.raises(ValueError, match=message):
        loop.train(cfg, tmp_path)
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("environment, flags, merged", [
    ("", "", ""),
    ("", "--xla_a= --xla_b=1", "--xla_a= --xla_b=1"),
    ("--xla_a=2", "--xla_a= --xla_b=1", "--xla_a=2 --xla_b=1"),  # the environment's value wins
    ("--xla_c", "--xla_c=0", "--xla_c"),
    ("  --xla_d=1  ", "", "--xla_d=1"),
])
def test_merged_xla_flags(environment, flags, merged):
    assert config_lib.merged_xla_flags(environment, flags) == merged


def test_resume_may_change_xla_flags(tmp_path):
    cfg = _toy_method.get_config()
    cfg.train.num_steps = 5
    loop.train(cfg, tmp_path)
    other = _toy_method.get_config()
    other.xla_flags = ""
    other.train.num_steps = 10
    loop.train(other, tmp_path)
    assert Checkpoints(tmp_path / "checkpoints").latest_step() == 10


def test_bad_method_config_writes_nothing(tmp_path):
    """A config the method's build rejects fails before the workdir gets any file or folder."""
    cfg = _toy_method.get_config()
    cfg.model.dim = -1  # numpy cannot draw a (-1,)-shaped weight vector
    workdir = tmp_path / "run"
    with pytest.raises(ValueError):
        loop.train(cfg, workdir)
    assert not workdir.exists()


@pytest.mark.parametrize("override, message", [
    ("train.num_stepz=3", "unknown config field 'train.num_stepz'"),
    ("nosuch.a=3", "unknown config field 'nosuch'"),
    ("train.num_steps=abc", "train.num_steps"),
    ("novalue", "must look like field.path=value"),
])
def test_bad_overrides_name_the_field(override, message):
    cfg = _toy_method.get_config()
    cfg.lock()
    with pytest.raises(ValueError, match=message):
        config_lib.apply_override(cfg, override)


def test_overrides_parse_literals():
    cfg = config_lib.load_config(str(ROOT / "configs/ffjord.py") + ":smoke",
                                 ["model.hidden=(8, 8)", "optim.learning_rate=2e-3", "solver.name=tsit5"])
    assert tuple(cfg.model.hidden) == (8, 8) and cfg.optim.learning_rate == 2e-3
    assert cfg.solver.name == "tsit5"


_DEVICE_SCRIPT = """
import json, sys
from jaxebm.train import config as config_lib, loop
cfg = config_lib.load_config(sys.argv[1], ["train.num_steps=3", "train.log_every=1", "model.hidden=(8,)"])
loop.train(cfg, sys.argv[2])
import jax
print(json.dumps({"devices": jax.device_count()}))
"""


def _losses(workdir):
    return [r["loss"] for r in map(json.loads, (workdir / "metrics.jsonl").read_text().splitlines())
            if r["split"] == "train"]


def test_eight_devices_give_the_same_losses_as_one(tmp_path):
    results = {}
    for n in (1, 8):
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}",
                   JAX_PLATFORMS="cpu")
        out = subprocess.run([sys.executable, "-c", _DEVICE_SCRIPT, str(ROOT / "configs/ffjord.py:smoke"),
                              str(tmp_path / f"d{n}")], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-2000:]
        assert json.loads(out.stdout.strip().splitlines()[-1])["devices"] == n
        results[n] = _losses(tmp_path / f"d{n}")
    assert len(results[1]) == 3
    np.testing.assert_allclose(results[8], results[1], rtol=1e-4)


def test_batch_must_divide_over_devices(tmp_path):
    mesh = jax.sharding.Mesh(np.asarray(jax.devices() * 1), ("data",))
    from jaxebm.train.sharding import check_batch_size

    check_batch_size(16, mesh)
    if jax.device_count() > 1:
        with pytest.raises(ValueError, match="divisible"):
            check_batch_size(jax.device_count() + 1, mesh)
