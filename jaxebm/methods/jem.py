r"""JEM (Grathwohl et al. 2020): a classifier read as an energy-based model of p(x, y).

A classifier with logits :math:`f_\theta(x) \in \mathbb R^K` defines
:math:`\log \tilde p(x) = \operatorname{logsumexp}_y f_\theta(x)[y]` and keeps
:math:`p(y \mid x) = \operatorname{softmax} f_\theta(x)`. One training iteration:

1. Data: images scaled to :math:`[-1, 1]`, augmented (pad 4 with reflection, random crop,
   horizontal flip for CIFAR), plus Gaussian noise :math:`\sigma \varepsilon` (JEM: 0.03).
2. Samples: ``B`` chains start from a persistent replay buffer (each from fresh
   :math:`U(-1, 1)` noise with probability ``reinit_prob``) and run ``n_steps`` of SGLD
   :math:`x \leftarrow x + \alpha \nabla_x \log \tilde p(x) + s\,\varepsilon` (JEM: 20 steps,
   :math:`\alpha = 1`, :math:`s = 0.01`; class-conditional: :math:`\log \tilde p(x \mid y) =
   f(x)[y]` with random :math:`y` and per-class buffer slices). The final states go back into
   the buffer. No gradient flows through the chain.
3. The loss (``w_y``, ``w_x``, ``w_2`` the configured weights)

   .. math::

       L = w_y \, \mathrm{CE}(f(x_{\mathrm{lab}}), y)
         + w_x \bigl(\overline{\log \tilde p(x_q)} - \overline{\log \tilde p(x_{\mathrm{data}})}\bigr)
         + w_2 \bigl(\overline{E(x_{\mathrm{data}})^2} + \overline{E(x_q)^2}\bigr),

   :math:`E = -\log \tilde p`; its gradient in :math:`\theta` is the maximum-likelihood gradient
   of :math:`\log p(x)` (up to the sampler's bias). The L2 term (the author's advice for
   stability) is off in the paper's setting.

Fully supervised, the labelled batch *is* the data batch (one forward pass serves both terms);
with ``data.labels_per_class > 0`` (semi-supervised) a separate batch from the labelled subset
feeds the cross-entropy and all training images feed the :math:`p(x)` term. The ``baseline``
variants set ``w_x = 0``: the same network trained by cross-entropy alone, no sampler, no
buffer. The SGLD chain runs inside the one jitted step as a rolled ``lax.scan`` (``sgld.loop``:
``auto`` = ``scan``, or ``unrolled``, a Python loop inside the jit, identical numbers). The conv
nets' convolutions are ``jaxebm.nn.conv.Conv``, whose input gradients run as fast inside a scan
as unrolled on the CPU, where autodiff's own take a path 3-14x slower inside loops
(benchmarks/conv_grad.py); the scan compiles 2-4x faster.

Evaluation (on ``eval.split``: ``test``, ``validation`` or both): accuracy and negative
log-likelihood, expected calibration error (15 bins) beside the ECE a perfectly calibrated model
with the same confidences would show by chance on the same test set (``ece_calibrated``, the
binned ECE's floor), mean confidence :math:`\max_y p(y \mid x)`, and OOD AUROC
(in-distribution = the test split, positive class) for JEM's three scores
:math:`\log \tilde p(x)`, :math:`\max_y p(y \mid x)` and :math:`-\lVert \nabla_x \log \tilde
p(x) \rVert_2` against each configured OOD set: TFDS test splits of the same image shape
(``svhn``, ``cifar100``, ...) or sets made from the test split with a fixed seed (``permuted``:
each image's pixels shuffled; ``interp``: :math:`(x + x')/2` with another test image;
``noise``: :math:`U(-1, 1)` images). Test and OOD inputs get the same data noise as training,
as in the reference. Figures: a reliability diagram, the buffer, and sample grids
(unconditional and one row per class) from longer chains (``eval.sample_steps``) started from
the buffer or from noise. Beside them, ``predictions.npz`` holds the evaluated examples'
log p(y|x) and labels, so metrics can be pooled over runs (cross-validation folds).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from jaxebm import data as data_lib
from jaxebm import energies
from jaxebm.data import images as images_lib
from jaxebm.data import transforms
from jaxebm.data.base import ArrayDataset
from jaxebm.eval import calibration, ood, plots
from jaxebm.nn.convnet import ConvNet
from jaxebm.nn.mlp import MLP, get_activation
from jaxebm.nn.wrn import WideResNet
from jaxebm.samplers import init_buffer, sample_from_buffer, sgld, update_buffer
from jaxebm.train.method import Method
from jaxebm.train.optim import make_optimizer, validate_optim

Array = jax.Array
MODEL_KINDS = ("wrn", "convnet", "mlp")
LOOPS = ("auto", "unrolled", "scan")
SYNTHETIC_OOD = ("permuted", "interp", "noise")
SAMPLE_INITS = ("buffer", "noise")
EVAL_SPLITS = ("test", "validation", "validation+test")


# ------------------------------------------------------------------------------ validation

def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def validate_config(cfg: ml_collections.ConfigDict) -> None:
    """Checks every JEM field that needs no data; raises ValueError naming the field."""
    m, j, s, e = cfg.model, cfg.jem, cfg.sgld, cfg.eval
    if m.kind not in MODEL_KINDS:
        raise ValueError(f"model.kind={m.kind!r}: expected one of {MODEL_KINDS}")
    get_activation(m.activation)
    if m.norm not in ("none", "group", "layer"):
        raise ValueError(f"model.norm={m.norm!r}: expected 'none', 'group' or 'layer' "
                         "(BatchNorm couples the samples of a batch and is not offered)")
    if not 0.0 <= m.dropout < 1.0:
        raise ValueError(f"model.dropout must be in [0, 1), got {m.dropout}")
    if m.kind == "wrn" and (m.depth < 10 or (m.depth - 4) % 6 != 0 or not _positive_int(m.width)):
        raise ValueError(f"model.depth={m.depth}, model.width={m.width}: a WRN needs depth 6n + 4 "
                         "(10, 16, 22, 28, ...) and a positive integer width")
    if m.kind == "convnet" and (not m.channels or any(not _positive_int(c) for c in m.channels)):
        raise ValueError(f"model.channels={tuple(m.channels)} must be positive integers")
    if m.kind == "mlp" and (not m.hidden or any(not _positive_int(h) for h in m.hidden)):
        raise ValueError(f"model.hidden={tuple(m.hidden)} must be positive integers")

    for field in ("p_x_weight", "p_y_given_x_weight", "l2_energy_weight", "data_noise"):
        if not j[field] >= 0:
            raise ValueError(f"jem.{field} must be >= 0, got {j[field]}")
    if j.p_x_weight == 0 and j.p_y_given_x_weight == 0:
        raise ValueError("jem.p_x_weight and jem.p_y_given_x_weight are both 0: nothing to train")
    if not (isinstance(j.pad, int) and j.pad >= 0):
        raise ValueError(f"jem.pad must be an integer >= 0, got {j.pad!r}")

    # The sampler's fields are checked for the baselines too: their figures use the sampler.
    if not _positive_int(s.n_steps):
        raise ValueError(f"sgld.n_steps must be a positive integer, got {s.n_steps!r}")
    if not s.step_size > 0 or not s.noise_std >= 0:
        raise ValueError(f"sgld.step_size must be > 0 and sgld.noise_std >= 0, got "
                         f"{s.step_size} and {s.noise_std}")
    if not 0.0 <= s.reinit_prob <= 1.0:
        raise ValueError(f"sgld.reinit_prob must be in [0, 1], got {s.reinit_prob}")
    if not _positive_int(s.buffer_size):
        raise ValueError(f"sgld.buffer_size must be a positive integer, got {s.buffer_size!r}")
    if s.init not in ("uniform", "gaussian"):
        raise ValueError(f"sgld.init={s.init!r}: expected 'uniform' or 'gaussian'")
    if s.loop not in LOOPS:
        raise ValueError(f"sgld.loop={s.loop!r}: expected one of {LOOPS}")

    if not _positive_int(e.batch_size):
        raise ValueError(f"eval.batch_size must be a positive integer, got {e.batch_size!r}")
    if not _positive_int(e.ece_bins):
        raise ValueError(f"eval.ece_bins must be a positive integer, got {e.ece_bins!r}")
    if not (isinstance(e.sample_steps, int) and e.sample_steps >= 0):
        raise ValueError(f"eval.sample_steps must be an integer >= 0, got {e.sample_steps!r}")
    if e.sample_init not in SAMPLE_INITS:
        raise ValueError(f"eval.sample_init={e.sample_init!r}: expected one of {SAMPLE_INITS}")
    if e.split not in EVAL_SPLITS:
        raise ValueError(f"eval.split={e.split!r}: expected one of {EVAL_SPLITS}")
    known = SYNTHETIC_OOD + tuple(images_lib.TFDS_NAMES)
    for name in e.ood_sets:
        if name not in known:
            raise ValueError(f"eval.ood_sets: unknown OOD set {name!r}; expected any of {known}")
    if not (isinstance(cfg.data.labels_per_class, int) and cfg.data.labels_per_class >= 0):
        raise ValueError(f"data.labels_per_class must be an integer >= 0 (0: all labelled), "
                         f"got {cfg.data.labels_per_class!r}")


def _validate_against_data(cfg: ml_collections.ConfigDict, ds) -> None:
    shape = tuple(ds.example_shape)
    if len(shape) != 3 or ds.num_classes is None or ds.n_bins is None:
        raise ValueError(f"JEM needs labelled images; data.name={cfg.data.name!r} gives examples "
                         f"of shape {shape} (num_classes={ds.num_classes})")
    if cfg.jem.class_conditional and cfg.sgld.buffer_size % ds.num_classes:
        raise ValueError(f"jem.class_conditional: sgld.buffer_size={cfg.sgld.buffer_size} must be "
                         f"a multiple of the {ds.num_classes} classes (one slice per class)")
    if cfg.jem.pad >= min(shape[:2]):
        raise ValueError(f"jem.pad={cfg.jem.pad} must be smaller than the image side {shape[:2]}")
    for name in cfg.eval.ood_sets:
        if name in images_lib.TFDS_NAMES and images_lib.IMAGE_SHAPES[name] != shape:
            raise ValueError(f"eval.ood_sets: {name!r} has images of shape "
                             f"{images_lib.IMAGE_SHAPES[name]}, the data {cfg.data.name!r} has "
                             f"{shape}; use {SYNTHETIC_OOD} or a TFDS set of the same shape")


# ------------------------------------------------------------------------------------ data

class SemiSupervised:
    """Training stream for semi-supervised JEM: all images plus a labelled subset.

    ``train_batch(step)`` gives ``x`` (all training images, for the :math:`p(x)` term) and
    ``x_lab``/``y_lab`` from ``labels_per_class`` examples of each class (chosen once from
    ``default_rng([seed, 1])``), each stream deterministic in ``(seed, step)``.
    """

    def __init__(self, full: ArrayDataset, labels_per_class: int):
        self.full = full
        self.name, self.batch_size, self.seed = full.name, full.batch_size, full.seed
        self.example_shape, self.n_bins = full.example_shape, full.n_bins
        self.num_classes = full.num_classes
        train = full.split("train")
        rng = np.random.default_rng([full.seed, 1])
        chosen = []
        for c in range(full.num_classes):
            members = np.flatnonzero(train["y"] == c)
            if members.size < labels_per_class:
                raise ValueError(f"data.labels_per_class={labels_per_class}: class {c} has only "
                                 f"{members.size} training examples")
            chosen.append(rng.permutation(members)[:labels_per_class])
        idx = np.sort(np.concatenate(chosen))
        if idx.size < full.batch_size:
            raise ValueError(f"data.labels_per_class={labels_per_class} gives {idx.size} labelled "
                             f"examples, fewer than data.batch_size={full.batch_size}")
        labelled = {"x": train["x"][idx], "y": train["y"][idx]}
        splits = {"train": labelled, "validation": full.split("validation"),
                  "test": full.split("test")}
        # A different seed word so the two streams do not share their epoch permutations.
        self.labelled = ArrayDataset(splits, full.batch_size, full.seed + 1, name=f"{full.name}-lab",
                                     n_bins=full.n_bins, num_classes=full.num_classes)
        self.num_labelled = int(idx.size)

    def train_batch(self, step: int) -> dict[str, np.ndarray]:
        lab = self.labelled.train_batch(step)
        return {"x": self.full.train_batch(step)["x"], "x_lab": lab["x"], "y_lab": lab["y"]}

    def split(self, name: str) -> dict[str, np.ndarray]:
        return self.full.split(name)


def eval_split(ds, name: str) -> dict[str, np.ndarray]:
    """The evaluation examples: one held-out split, or ``validation+test``, both concatenated.

    Neither held-out split reaches training (the sampler's buffer, the cross-entropy and the
    :math:`p(x)` term see training images only), so where no model selection reads the
    validation split the union is an honest test set of twice the size: on the 8x8 digits the
    test split alone has 179 images, too few for a 15-bin ECE.
    """
    parts = [ds.split(part) for part in name.split("+")]
    return {k: np.concatenate([p[k] for p in parts]) for k in ("x", "y")}


def load_data(cfg: ml_collections.ConfigDict):
    ds = data_lib.load(cfg.data, seed=cfg.seed)
    if cfg.data.labels_per_class > 0:
        if not isinstance(ds, ArrayDataset) or ds.num_classes is None:
            raise ValueError(f"data.labels_per_class needs a labelled image set, not {cfg.data.name!r}")
        ds = SemiSupervised(ds, cfg.data.labels_per_class)
    return ds


def _symmetric_np(x_uint8: np.ndarray, n_bins: int) -> np.ndarray:
    """``transforms.to_symmetric`` in numpy (host-side data, no compiled program)."""
    return np.asarray(x_uint8, np.float32) / np.float32(n_bins - 1) * np.float32(2) - np.float32(1)


def make_ood_sets(cfg: ml_collections.ConfigDict, test_x: np.ndarray, n_bins: int) -> dict[str, np.ndarray]:
    """OOD inputs in [-1, 1] (before data noise), at most as many as the test inputs.

    Synthetic sets use ``default_rng([eval.ood_seed, i])`` for the i-th configured set, so they
    are the same in every evaluation and every run.
    """
    x_sym = _symmetric_np(test_x, n_bins)
    n, h, w, c = x_sym.shape
    out = {}
    for i, name in enumerate(cfg.eval.ood_sets):
        rng = np.random.default_rng([cfg.eval.ood_seed, i])
        if name == "permuted":
            flat = x_sym.reshape(n, h * w, c)
            order = np.argsort(rng.random((n, h * w)), axis=1)  # one shuffle of positions per image
            out[name] = np.take_along_axis(flat, order[:, :, None], axis=1).reshape(x_sym.shape)
        elif name == "interp":
            partner = rng.permutation(n)
            partner = np.where(partner == np.arange(n), (partner + 1) % n, partner)
            out[name] = 0.5 * (x_sym + x_sym[partner])
        elif name == "noise":
            out[name] = rng.uniform(-1.0, 1.0, x_sym.shape).astype(np.float32)
        else:
            x = images_lib.load_test_images(name, cfg.data.dir or None, limit=n)["x"]
            out[name] = _symmetric_np(x, images_lib.N_BINS[name])
    return out


# ------------------------------------------------------------------------------- the model

def make_network(cfg: ml_collections.ConfigDict, shape: tuple[int, ...], num_classes: int,
                 rngs: nnx.Rngs) -> nnx.Module:
    m = cfg.model
    norm = None if m.norm == "none" else m.norm
    if m.kind == "wrn":
        return WideResNet(m.depth, m.width, num_classes, in_channels=shape[-1],
                          dropout_rate=m.dropout, norm=norm, activation=m.activation, rngs=rngs)
    if m.kind == "convnet":
        return ConvNet(num_classes, in_channels=shape[-1], channels=tuple(m.channels),
                       activation=m.activation, norm=norm, dropout_rate=m.dropout, rngs=rngs)
    return MLP(int(np.prod(shape)), tuple(m.hidden), num_classes, activation=m.activation,
               dropout_rate=m.dropout, rngs=rngs)


@dataclasses.dataclass(frozen=True)
class JEMCore:
    """The data-independent part of JEM: what the method and the benchmark share.

    ``train_step(state, batch, key)`` takes uint8 images: ``batch["x"]`` (+ ``"y"`` fully
    supervised, or ``"x_lab"``/``"y_lab"`` for a separate labelled batch).
    """

    init: Callable[[Array], dict]
    train_step: Callable[[dict, dict, Array], tuple[dict, dict]]
    apply: Callable[..., Array]
    prepare: Callable[[Array, Array, bool], Array]
    chain: Callable[..., Array]
    uses_sampler: bool
    shape: tuple[int, ...]
    num_classes: int


def chain_unroll(cfg: ml_collections.ConfigDict) -> int | bool:
    """``True`` (a Python loop in the jit) for ``unrolled``; a rolled scan for ``scan``/``auto``."""
    return True if cfg.sgld.loop == "unrolled" else 1


def make_core(cfg: ml_collections.ConfigDict, shape: tuple[int, ...], num_classes: int,
              n_bins: int) -> JEMCore:
    """Builds JEM's init and train step for images of ``shape`` with ``n_bins`` levels."""
    validate_config(cfg)
    validate_optim(cfg.optim)
    shape = tuple(int(d) for d in shape)
    j, s = cfg.jem, cfg.sgld
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: make_network(cfg, shape, num_classes, nnx.Rngs(0))))
    apply = energies.make_apply(graphdef)
    optimizer = make_optimizer(cfg.optim)
    uses_sampler = j.p_x_weight > 0
    class_cond = bool(j.class_conditional)
    unroll = chain_unroll(cfg)
    clip = (-1.0, 1.0) if s.clip else None
    use_dropout = cfg.model.dropout > 0
    w_x, w_y, w_2 = float(j.p_x_weight), float(j.p_y_given_x_weight), float(j.l2_energy_weight)
    sigma = float(j.data_noise)

    def init(key: Array) -> dict:
        k_net, k_buf = jax.random.split(key)
        params = nnx.split(make_network(cfg, shape, num_classes, nnx.Rngs(k_net)))[1]
        state = {"params": params, "opt": optimizer.init(params), "step": jnp.zeros((), jnp.int32)}
        if uses_sampler:
            state["buffer"] = init_buffer(k_buf, s.buffer_size, shape, s.init,
                                          num_classes=num_classes if class_cond else 1)
        return state

    def prepare(x_uint8: Array, key: Array, train: bool) -> Array:
        """uint8 -> [-1, 1], augmented (training only), plus N(0, sigma^2) noise."""
        k_aug, k_noise = jax.random.split(key)
        x = transforms.to_symmetric(x_uint8, n_bins)
        if train and (j.pad > 0 or j.flip):
            x = transforms.augment(k_aug, x, flip=bool(j.flip), pad=int(j.pad))
        if sigma > 0:
            x = x + sigma * jax.random.normal(k_noise, x.shape, x.dtype)
        return x

    def chain(params, x0: Array, key: Array, y: Array | None, n_steps: int) -> Array:
        """SGLD on log p~(x) (``y`` None) or log p~(x|y) = f(x)[y]; no dropout while sampling."""
        if y is None:
            log_prob = energies.log_px_fn(lambda x: apply(params, x))
        else:
            log_prob = energies.log_px_given_y_fn(lambda x: apply(params, x), y)
        return sgld(log_prob, x0, key=key, n_steps=n_steps, step_size=s.step_size,
                    noise_std=s.noise_std, unroll=unroll, clip=clip)

    def loss_fn(params, x_data, x_lab, y_lab, x_q, key):
        parts = [x_data] + ([] if x_lab is None else [x_lab]) + ([] if x_q is None else [x_q])
        # one forward pass over everything: nothing couples the examples of a batch
        logits = apply(params, jnp.concatenate(parts, axis=0), key=key if use_dropout else None)
        b = x_data.shape[0]
        l_data = logits[:b]
        l_lab = l_data if x_lab is None else logits[b:b + x_lab.shape[0]]
        log_py = energies.log_p_y_given_x(l_lab)
        ce = -jnp.mean(energies.log_px_given_y_unnorm(log_py, y_lab))
        acc = jnp.mean((jnp.argmax(l_lab, axis=-1) == y_lab).astype(jnp.float32))
        lp_data = energies.log_px_unnorm(l_data)
        metrics = {"ce": ce, "acc": acc, "logpx_data": jnp.mean(lp_data)}
        loss = w_y * ce + w_2 * jnp.mean(lp_data**2)
        if x_q is not None:
            lp_q = energies.log_px_unnorm(logits[logits.shape[0] - x_q.shape[0]:])
            loss = loss + w_x * (jnp.mean(lp_q) - jnp.mean(lp_data)) + w_2 * jnp.mean(lp_q**2)
            metrics.update(logpx_sample=jnp.mean(lp_q),
                           energy_gap=jnp.mean(lp_data) - jnp.mean(lp_q))
        return loss, metrics

    def train_step(state: dict, batch: dict, key: Array) -> tuple[dict, dict]:
        k_data, k_lab, k_buf, k_y, k_chain, k_drop = jax.random.split(key, 6)
        params = state["params"]
        x_data = prepare(batch["x"], k_data, True)
        if "x_lab" in batch:
            x_lab, y_lab = prepare(batch["x_lab"], k_lab, True), batch["y_lab"]
        else:
            x_lab, y_lab = None, batch["y"]
        new_state = dict(state)
        x_q = None
        if uses_sampler:
            b = x_data.shape[0]
            y_q = jax.random.randint(k_y, (b,), 0, num_classes, jnp.int32) if class_cond else None
            x0, idx = sample_from_buffer(state["buffer"], k_buf, b, s.reinit_prob, y=y_q)
            x_q = jax.lax.stop_gradient(chain(params, x0, k_chain, y_q, s.n_steps))
            new_state["buffer"] = update_buffer(state["buffer"], idx, x_q)
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, x_data, x_lab, y_lab.astype(jnp.int32), x_q, k_drop)
        # test hook for the divergence path: a non-finite loss at one configured step
        loss = jnp.where(state["step"] == cfg.debug.nan_at_step, jnp.float32(jnp.nan), loss)
        updates, new_state["opt"] = optimizer.update(grads, state["opt"], params)
        new_state["params"] = optax.apply_updates(params, updates)
        new_state["step"] = state["step"] + 1
        metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads))
        return new_state, metrics

    return JEMCore(init=init, train_step=train_step, apply=apply, prepare=prepare, chain=chain,
                   uses_sampler=uses_sampler, shape=shape, num_classes=num_classes)


# ------------------------------------------------------------------------------ the method

def _seed_words(key: Array) -> list[int]:
    """Integers from a key, to seed numpy for host-side draws (no extra compiled program)."""
    return [int(w) for w in np.asarray(jax.random.key_data(key)).ravel()]


def to_unit(x: np.ndarray) -> np.ndarray:
    """[-1, 1] -> [0, 1], clipped (chains may leave the box)."""
    return np.clip((np.asarray(x, np.float32) + 1.0) * 0.5, 0.0, 1.0)


def build(cfg: ml_collections.ConfigDict) -> Method:
    validate_config(cfg)
    ds = load_data(cfg)
    _validate_against_data(cfg, ds)
    shape, num_classes, n_bins = tuple(ds.example_shape), int(ds.num_classes), int(ds.n_bins)
    core = make_core(cfg, shape, num_classes, n_bins)
    e = cfg.eval
    sigma = float(cfg.jem.data_noise)

    test = eval_split(ds, e.split)
    if e.max_examples:
        test = {k: v[: e.max_examples] for k, v in test.items()}
    test_x = _symmetric_np(test["x"], n_bins)
    test_y = np.asarray(test["y"])
    ood_sets = make_ood_sets(cfg, test["x"], n_bins)

    # The data noise of evaluation inputs comes from a fixed key (eval.ood_seed, the set, the
    # batch), so every evaluation and the reliability diagram see the same noisy inputs and
    # checkpoints compare like for like.
    @jax.jit
    def eval_batch(params, x, set_index, batch_index):
        """Data noise as in training (no augmentation), then probabilities and the three scores."""
        key = jax.random.fold_in(jax.random.fold_in(jax.random.key(e.ood_seed), set_index),
                                 batch_index)
        if sigma > 0:
            x = x + sigma * jax.random.normal(key, x.shape, x.dtype)
        scores = ood.jem_ood_scores(lambda z: core.apply(params, z), x)
        log_probs = energies.log_p_y_given_x(core.apply(params, x))
        return log_probs, scores

    def run_eval(params, x: np.ndarray, set_index: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Over any number of inputs with one compiled shape (the last batch padded)."""
        bs = e.batch_size
        log_probs, scores = [], {k: [] for k in ood.SCORES}
        for i, start in enumerate(range(0, len(x), bs)):
            chunk = x[start:start + bs]
            n = len(chunk)
            if n < bs:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], bs - n, 0)])
            lp, sc = eval_batch(params, jnp.asarray(chunk), np.int32(set_index), np.int32(i))
            log_probs.append(np.asarray(lp)[:n])
            for k in ood.SCORES:
                scores[k].append(np.asarray(sc[k])[:n])
        return np.concatenate(log_probs), {k: np.concatenate(v) for k, v in scores.items()}

    def evaluate(state, key):
        del key  # evaluation is deterministic: fixed OOD sets and fixed input noise
        params = state["params"]
        log_probs, scores_in = run_eval(params, test_x, 0)
        out = {
            **calibration.classification_metrics(log_probs, test_y, e.ece_bins),
            "logpx_test": float(np.mean(scores_in["log_px"])),
            "num_examples": float(len(test_y)),
        }
        for i, (name, x_out) in enumerate(ood_sets.items()):
            _, scores_out = run_eval(params, x_out, i + 1)
            out[f"logpx_{name}"] = float(np.mean(scores_out["log_px"]))
            for score in ood.SCORES:
                try:
                    out[f"auroc_{name}_{score}"] = ood.ood_auroc(scores_in[score], scores_out[score])
                except ValueError:  # non-finite scores: a broken model, report it as missing
                    out[f"auroc_{name}_{score}"] = float("nan")
        return out

    chunk_steps = int(cfg.sgld.n_steps)  # figures run whole chains of the training length

    # Keys are folded inside the jitted chunks: eager key arithmetic would compile programs too.
    @jax.jit
    def chain_uncond(params, x, key, stream, t):
        k = jax.random.fold_in(jax.random.fold_in(key, stream), t)
        return core.chain(params, x, k, None, chunk_steps)

    @jax.jit
    def chain_cond(params, x, y, key, stream, t):
        k = jax.random.fold_in(jax.random.fold_in(key, stream), t)
        return core.chain(params, x, k, y, chunk_steps)

    def run_sampler(state, key, stream: int, n: int, y: np.ndarray | None) -> np.ndarray:
        """``n`` chains of ``eval.sample_steps`` (rounded up to whole chunks) from the buffer
        or from noise; conditional on ``y`` when given. Returns [-1, 1] images (numpy)."""
        rng = np.random.default_rng(_seed_words(key) + [stream])
        if e.sample_init == "buffer" and "buffer" in state:
            buffer = np.asarray(state["buffer"].samples)
            slices = state["buffer"].num_classes
            if y is not None and slices > 1:
                size = buffer.shape[0] // slices
                idx = y * size + rng.integers(0, size, n)
            else:
                idx = rng.integers(0, buffer.shape[0], n)
            x = buffer[idx]
        elif cfg.sgld.init == "gaussian":
            x = rng.standard_normal((n, *shape)).astype(np.float32)
        else:
            x = rng.uniform(-1.0, 1.0, (n, *shape)).astype(np.float32)
        x = jnp.asarray(x, jnp.float32)
        n_chunks = -(-e.sample_steps // chunk_steps)
        for t in range(n_chunks):
            if y is None:
                x = chain_uncond(state["params"], x, key, np.int32(stream), np.int32(t))
            else:
                x = chain_cond(state["params"], x, jnp.asarray(y, jnp.int32), key,
                               np.int32(stream), np.int32(t))
        return np.asarray(x)

    def sample(state, key, num):
        bs = e.num_plot_samples
        out = [run_sampler(state, key, 100 + i, bs, None)
               for i in range(-(-num // bs))]
        return to_unit(np.concatenate(out)[:num])

    def write_figures(state, key, directory: Path):
        directory = Path(directory)
        params = state["params"]
        log_probs, _ = run_eval(params, test_x, 0)
        kind = "JEM" if core.uses_sampler else "baseline"
        paths = [directory / "reliability.png"]
        ece = calibration.reliability_diagram(np.exp(log_probs.astype(np.float64)), test_y,
                                              paths[0], n_bins=e.ece_bins)
        with open(directory / "reliability.txt", "w") as f:  # the number behind the picture
            f.write(f"{kind} {cfg.data.name} ECE {ece:.6f}\n")
        # The evaluated examples' predictions, for metrics pooled over runs (cross-validation
        # folds: benchmarks/jem_digits_cv.py).
        np.savez(directory / "predictions.npz", log_probs=np.asarray(log_probs, np.float32),
                 labels=test_y)
        n = e.num_plot_samples
        steps = -(-e.sample_steps // chunk_steps) * chunk_steps
        source = e.sample_init if "buffer" in state else "noise"
        x = run_sampler(state, key, 1, n, None)
        paths.append(plots.save_image_grid(
            to_unit(x), directory / "samples.png",
            title=f"{kind} samples, {steps} SGLD steps from {source}"))
        per_class = max(1, n // num_classes)
        y = np.repeat(np.arange(num_classes), per_class)
        x = run_sampler(state, key, 2, len(y), y)
        paths.append(plots.save_image_grid(
            to_unit(x), directory / "samples_per_class.png",
            title=f"{kind} p(x|y), one row per class, {steps} steps from {source}"))
        if "buffer" in state:
            buf = np.asarray(state["buffer"].samples)
            pick = np.random.default_rng(0).choice(len(buf), min(n, len(buf)), replace=False)
            paths.append(plots.save_image_grid(to_unit(buf[np.sort(pick)]), directory / "buffer.png",
                                               title="replay buffer"))
        return paths

    return Method(init=core.init, train_step=core.train_step, evaluate=evaluate, sample=sample,
                  data=ds, write_figures=write_figures)


def pool_folds(workdirs) -> tuple[np.ndarray, np.ndarray, dict]:
    """Pools the held-out predictions of the K workdirs of one K-fold cross-validation
    (``data.cv_folds = K``, ``data.cv_fold = 0 .. K - 1``, one each).

    Every fold's ``samples/predictions.npz`` covers its held-out block, so together they cover
    every example once. Returns ``(log_probs, labels, metrics)``: the pooled ``(n, classes)``
    log p(y|x) and labels in fold order, and accuracy, NLL, ECE, its calibrated floor and mean
    confidence over all n (with ``n_bins`` from the folds' ``eval.ece_bins``).
    """
    import json

    dirs = [Path(d) for d in workdirs]
    configs = [json.loads((d / "config.json").read_text()) for d in dirs]
    folds = {c["data"]["cv_folds"] for c in configs}
    if len(folds) != 1 or (k := folds.pop()) < 2:
        raise ValueError(f"pool_folds: the workdirs must share one data.cv_folds >= 2, got "
                         f"{[c['data']['cv_folds'] for c in configs]}")
    order = sorted(range(len(dirs)), key=lambda i: configs[i]["data"]["cv_fold"])
    got = [configs[i]["data"]["cv_fold"] for i in order]
    if got != list(range(k)):
        raise ValueError(f"pool_folds: need folds 0..{k - 1} once each, got {got}")
    bins = {c["eval"]["ece_bins"] for c in configs}
    if len(bins) != 1:
        raise ValueError(f"pool_folds: the folds differ in eval.ece_bins: {sorted(bins)}")
    n_bins = bins.pop()
    parts = [np.load(dirs[i] / "samples" / "predictions.npz") for i in order]
    log_probs = np.concatenate([p["log_probs"] for p in parts]).astype(np.float64)
    labels = np.concatenate([p["labels"] for p in parts])
    metrics = {**calibration.classification_metrics(log_probs, labels, n_bins),
               "num_examples": int(labels.size), "folds": k}
    return log_probs, labels, metrics


__all__ = ["EVAL_SPLITS", "JEMCore", "SemiSupervised", "build", "chain_unroll", "eval_split",
           "load_data", "make_core", "make_network", "make_ood_sets", "pool_folds",
           "validate_config"]
