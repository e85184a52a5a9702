"""Configs: the shared fields, loading ``path.py[:variant]``, ``--config.a.b=v`` overrides.

Every method's config file defines ``get_config(arg) -> ConfigDict`` starting from
``base_config(method)``, which holds the fields the harness reads (``seed``, ``data``, ``train``,
``optim``). Configs are locked, so a mistyped override fails instead of being ignored.
"""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

import ml_collections

from jaxebm.train.optim import optim_config


# jaxlib 0.10's default YNNPACK fusion runs the CPU convolutions of JEM's nets about 2x slower
# (benchmarks/README.md); every recorded run but the LSD toy's used this flag.
NO_YNN_FUSION = "--xla_cpu_experimental_ynn_fusion_type="


def base_config(method: str) -> ml_collections.ConfigDict:
    """The fields every method has; method configs add ``model``, ``eval`` and their own."""
    cfg = ml_collections.ConfigDict()
    cfg.method = method
    cfg.seed = 0
    cfg.data = ml_collections.ConfigDict(dict(name="", dir="", batch_size=100, eval_size=20000,
                                              validation_size=5000, cv_folds=0, cv_fold=0))
    cfg.train = ml_collections.ConfigDict(
        dict(
            num_steps=1000,
            log_every=50,
            eval_every=0,  # 0: evaluate only at the end
            ckpt_every=500,
            keep_checkpoints=3,
            # a loss that is non-finite or above this bound counts as a divergence
            loss_bound=1e8,
            # and so does any step metric named here above its bound ("energy_gap:10,ce:50"),
            # for runs that drift away before their loss does
            metric_bounds="",
            # after a divergence: restore the last good checkpoint, change the seed, multiply the
            # config fields named in rollback_scale ("optim.learning_rate:0.5,sgld.n_steps:2") by
            # their factors, and go on; at most this often
            max_rollbacks=0,
            rollback_scale="",
            progress=True,
        )
    )
    cfg.optim = optim_config()
    # XLA flags for this run, added by the CLI to XLA_FLAGS before JAX starts its backend; a
    # flag already in the environment keeps the environment's value. Speed only, not results
    # beyond float rounding, so a resumed run may change them.
    cfg.xla_flags = NO_YNN_FUSION
    return cfg


def merged_xla_flags(environment: str, flags: str) -> str:
    """``environment`` (XLA_FLAGS) followed by each of ``flags`` whose name it does not set."""
    present = {token.partition("=")[0] for token in environment.split()}
    extra = [token for token in flags.split() if token.partition("=")[0] not in present]
    return " ".join(environment.split() + extra)


def load_config(spec: str, overrides: list[str] = ()) -> ml_collections.ConfigDict:
    """Loads ``configs/x.py[:variant]`` and applies ``a.b=v`` overrides; the result is locked."""
    path, _, variant = spec.partition(":")
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"config file {path!r} not found (expected configs/<method>.py)")
    module_spec = importlib.util.spec_from_file_location(f"jaxebm_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"{path} defines no get_config(arg)")
    cfg = module.get_config(variant or None)
    cfg.lock()
    for item in overrides:
        apply_override(cfg, item)
    return cfg


def parse_value(text: str):
    """A Python literal if the text is one (1e-3, 5, True, (64, 64), None), else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_override(cfg: ml_collections.ConfigDict, item: str) -> None:
    """Applies one ``a.b.c=value`` override; unknown fields and wrong types fail naming the field."""
    name, sep, text = item.partition("=")
    if not sep:
        raise ValueError(f"override {item!r} must look like field.path=value")
    *parents, leaf = name.split(".")
    node = cfg
    for i, part in enumerate(parents):
        if part not in node:
            raise ValueError(f"unknown config field {'.'.join(parents[: i + 1])!r} in override {item!r}")
        node = node[part]
    if leaf not in node:
        raise ValueError(f"unknown config field {name!r}; valid fields here: {sorted(node.keys())}")
    value = parse_value(text)
    old = node[leaf]
    if isinstance(old, (tuple, list)) and isinstance(value, (int, float, str)):
        value = (value,)
    if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    try:
        with cfg.unlocked():
            node[leaf] = value
    except (TypeError, ValueError) as err:
        raise ValueError(f"config field {name!r}: cannot set {text!r}: {err}") from None


def save_config(cfg: ml_collections.ConfigDict, path: Path) -> None:
    path.write_text(json.dumps(cfg.to_dict(), indent=2, sort_keys=True, default=list) + "\n")


def read_config(path: Path) -> ml_collections.ConfigDict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is this a jaxebm workdir (made by `jaxebm train`)?")
    cfg = ml_collections.ConfigDict(json.loads(path.read_text()))
    cfg.lock()
    return cfg


def validate_common(cfg: ml_collections.ConfigDict) -> None:
    """Checks the harness's own fields; methods check theirs in ``build``."""
    t = cfg.train
    for field in ("num_steps", "log_every", "ckpt_every", "keep_checkpoints"):
        if not (isinstance(t[field], int) and t[field] > 0):
            raise ValueError(f"train.{field} must be a positive integer, got {t[field]!r}")
    if t.eval_every < 0 or t.max_rollbacks < 0:
        raise ValueError("train.eval_every and train.max_rollbacks must be >= 0")
    if not t.loss_bound > 0:
        raise ValueError(f"train.loss_bound must be > 0, got {t.loss_bound}")
    if not (isinstance(cfg.data.batch_size, int) and cfg.data.batch_size > 0):
        raise ValueError(f"data.batch_size must be a positive integer, got {cfg.data.batch_size!r}")
    flags = cfg.get("xla_flags", "")
    if not isinstance(flags, str) or any(not t.startswith("--xla_") for t in flags.split()):
        raise ValueError(f"xla_flags must be a string of --xla_... flags separated by spaces, "
                         f"got {flags!r}")
    for path in rollback_factors(cfg):
        try:
            get_field(cfg, path)
        except KeyError:
            raise ValueError(f"train.rollback_scale names unknown field {path!r}") from None
    for name, bound in metric_bounds(cfg).items():
        if not bound > 0:
            raise ValueError(f"train.metric_bounds: the bound of {name!r} must be > 0, got {bound}")


def _named_numbers(text: str, field: str, form: str) -> dict[str, float]:
    """Parses ``"a:0.5,b.c:2"`` into {name: number}; ``form`` names the parts in errors."""
    out = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, number = item.partition(":")
        try:
            out[name] = float(number)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise ValueError(f"{field} item {item!r} must look like {form}")
    return out


def rollback_factors(cfg: ml_collections.ConfigDict) -> dict[str, float]:
    """Parses ``train.rollback_scale`` ("a.b:0.5,c:2") into {field path: factor}."""
    return _named_numbers(cfg.train.rollback_scale, "train.rollback_scale", "field.path:factor")


def metric_bounds(cfg: ml_collections.ConfigDict) -> dict[str, float]:
    """Parses ``train.metric_bounds`` ("energy_gap:10") into {step metric: bound on |metric|}."""
    return _named_numbers(cfg.train.get("metric_bounds", ""), "train.metric_bounds", "metric:bound")


def get_field(cfg: ml_collections.ConfigDict, path: str):
    node = cfg
    for part in path.split("."):
        if part not in node:
            raise KeyError(path)
        node = node[part]
    return node


def scaled_for_rollback(cfg: ml_collections.ConfigDict, rollbacks: int) -> ml_collections.ConfigDict:
    """The config used after ``rollbacks`` divergences: scaled fields (seed changes elsewhere)."""
    if rollbacks == 0:
        return cfg
    out = ml_collections.ConfigDict(cfg.to_dict())
    for path, factor in rollback_factors(cfg).items():
        *parents, leaf = path.split(".")
        node = out
        for part in parents:
            node = node[part]
        value = node[leaf] * factor**rollbacks
        node[leaf] = type(node[leaf])(round(value) if isinstance(node[leaf], int) else value)
    out.lock()
    return out
