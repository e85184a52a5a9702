r"""RELAX paper, discrete VAE: sigmoid belief nets trained with REINFORCE, REBAR or RELAX.

**Model** (the setup of Tucker et al. 2017 that the RELAX paper follows). Binary data
:math:`x \in \{0,1\}^D`, layers of 200 Bernoulli latents :math:`b_1, \dots, b_L`:

* generative: :math:`p(b_L) = \mathrm{Bern}(\sigma(\beta))` with a learned prior logit
  :math:`\beta`, :math:`p(b_{l-1}|b_l)` and :math:`p(x|b_1)` Bernoulli with logits
  :math:`d_l(2b_l - 1)`;
* inference: :math:`q(b_1|x)\,q(b_2|b_1)\cdots`, Bernoulli with logits
  :math:`\ell_l = e_l(2 b_{l-1} - 1)`, :math:`b_0 = x`.

``linear``: L = 1, :math:`e, d` affine (:math:`q(b|x) = \sigma(xW + \beta)` on :math:`2x-1`);
``linear2``: L = 2 affine layers stacked; ``nonlinear``: L = 1 with two tanh layers of 200 in
:math:`e` and :math:`d`. The decoder's output bias starts at the logit of the training pixels'
mean, as in the paper's code. Data are binarized deterministically, :math:`x = 1[v / v_{max} > 1/2]`
(half the pixel range; MNIST 0..255, digits 0..16).

**Objective.** :math:`f(b) = \log q(b|x) - \log p(x, b)`, the negative single-sample ELBO;
training minimizes :math:`\mathbb{E}_q[f]`. As in the paper's code the gradient splits into

* the *direct* part :math:`\nabla \mathbb{E}_b[f]` at fixed b: the decoder and prior, plus the
  encoder's :math:`\nabla_\phi \log q(b|x)` (zero in expectation);
* the *score-function* part through each layer's logits, estimated per data point and per layer
  by the chosen estimator with ``f`` as a black box, then pulled back through :math:`e_l`.

For layer k, ``f_k(b_k)`` draws the layers above k from fixed noise :math:`u_{>k}` (hard
thresholds) and evaluates f; ``b_{<k}`` are the hard samples already drawn. REBAR's control
variate is :math:`c_k(z) = \eta_k f_k^{soft}(\sigma_{\lambda_k}(z))`, where ``f_k^soft`` passes
relaxed samples :math:`\sigma_{\lambda_l}(\ell_l + \operatorname{logit} u_l)` up the later layers;
RELAX adds :math:`r_{\rho,k}(x, b_{<k}, z)`, a 2-hidden-layer ReLU MLP of 200 units on
:math:`(2x-1, 2b_{<k}-1, z)` whose output layer starts at 0 (so RELAX starts as REBAR). Both
are unbiased for any :math:`\eta, \lambda, \rho` (see :mod:`jaxebm.estimators.black_box`).

**Control variate training.** :math:`(\eta, \log\lambda, \rho)` follow the single-sample
gradient of the paper code's variance objective
:math:`\sum_k \frac1B \sum_i \| g_{k,i} / B \|^2` (:math:`g_{k,i}` the estimate for data point
i's layer-k logits), in the same jitted step as the model. Adam with
:math:`\beta_2 = 0.99999` for both; the control variate's weight decay acts on :math:`\rho` only.

Evaluation: the ELBO on the validation and test splits (``eval.elbo_samples`` draws per data
point), and the variance over ``eval.variance_samples`` draws of the encoder's training gradient
(and of the per-logit estimates) for one fixed training batch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxebm.estimators import black_box as est
from jaxebm.estimators.relaxations import bernoulli_log_prob, bernoulli_soft, uniform_open
from jaxebm.train.method import Method
from jaxebm.train.optim import make_optimizer

Array = jax.Array
Params = dict[str, Any]

# model name -> (stochastic layers, tanh hidden layers inside each encoder/decoder map)
MODELS = {"linear": (1, 0), "linear2": (2, 0), "nonlinear": (1, 2)}
ESTIMATORS = ("reinforce", "rebar", "relax")


# ----------------------------------------------------------------------------- dense networks


def dense_init(key: Array, sizes: tuple[int, ...], zero_last: bool = False) -> list[dict]:
    """Glorot-uniform weights and zero biases (TensorFlow's dense default, the paper's code)."""
    layers = []
    keys = jax.random.split(key, len(sizes) - 1)
    for i, (k, n_in, n_out) in enumerate(zip(keys, sizes[:-1], sizes[1:])):
        limit = float(np.sqrt(6.0 / (n_in + n_out)))
        w = jax.random.uniform(k, (n_in, n_out), jnp.float32, -limit, limit)
        if zero_last and i == len(sizes) - 2:
            w = jnp.zeros_like(w)
        layers.append({"w": w, "b": jnp.zeros((n_out,), jnp.float32)})
    return layers


def dense_apply(layers: list[dict], x: Array, activation: Callable[[Array], Array]) -> Array:
    """Affine maps with ``activation`` between them; the last one is linear. x: (..., n_in)."""
    for layer in layers[:-1]:
        x = activation(x @ layer["w"] + layer["b"])
    return x @ layers[-1]["w"] + layers[-1]["b"]


def log_bernoulli(logits: Array, b: Array) -> Array:
    """sum_j b_j logit_j - softplus(logit_j): log p(b) for hard b, the relaxed value for b in (0,1)."""
    return bernoulli_log_prob(logits, b)


# ---------------------------------------------------------------------- the sigmoid belief net


class SBN:
    """A sigmoid-belief-net VAE; every method takes ONE data point (vmap for batches).

    ``params = {"encoder": [e_1..e_L], "decoder": [d_1..d_L], "prior": beta}`` with ``e_l``
    giving q(b_l | b_{l-1}) (b_0 = x), ``d_1`` p(x | b_1) and ``d_l`` p(b_{l-1} | b_l).
    Latent samples are lists ``[b_1, ..., b_L]`` (Python index l-1).
    """

    def __init__(self, model: str, data_dim: int, num_latents: int, hidden: int = 200):
        if model not in MODELS:
            raise ValueError(f"vae.model={model!r}: expected one of {tuple(MODELS)}")
        self.model = model
        self.num_layers, depth = MODELS[model]
        self.data_dim = data_dim
        self.num_latents = num_latents
        self.hidden_sizes = (hidden,) * depth

    def init(self, key: Array, output_bias: Array | None = None) -> Params:
        n, h = self.num_latents, self.hidden_sizes
        keys = jax.random.split(key, 2 * self.num_layers)
        encoder, decoder = [], []
        for l in range(self.num_layers):
            n_below = self.data_dim if l == 0 else n
            encoder.append(dense_init(keys[2 * l], (n_below, *h, n)))
            decoder.append(dense_init(keys[2 * l + 1], (n, *h, n_below)))
        if output_bias is not None:
            decoder[0][-1]["b"] = jnp.asarray(output_bias, jnp.float32).reshape(self.data_dim)
        return {"encoder": encoder, "decoder": decoder, "prior": jnp.zeros((n,), jnp.float32)}

    def encoder_logits(self, params: Params, layer: int, below: Array) -> Array:
        """Logits of q(b_layer | below), ``below`` = x or the previous (possibly relaxed) sample."""
        return dense_apply(params["encoder"][layer], 2.0 * below - 1.0, jnp.tanh)

    def decoder_logits(self, params: Params, layer: int, b: Array) -> Array:
        """Logits of p(x | b_1) (layer 0) or p(b_layer | b_{layer+1})."""
        return dense_apply(params["decoder"][layer], 2.0 * b - 1.0, jnp.tanh)

    def log_joint(self, params: Params, x: Array, bs: list[Array]) -> Array:
        """log p(x, b_1..b_L) (bs may be relaxed)."""
        out = log_bernoulli(self.decoder_logits(params, 0, bs[0]), x)
        for l in range(1, self.num_layers):
            out = out + log_bernoulli(self.decoder_logits(params, l, bs[l]), bs[l - 1])
        return out + log_bernoulli(params["prior"], bs[-1])

    def log_posterior(self, params: Params, x: Array, bs: list[Array], fixed: dict[int, Array] = {}) -> Array:
        """log q(b_1..b_L | x); ``fixed[l]`` replaces layer l's logits (held constant)."""
        out = jnp.float32(0.0)
        for l in range(self.num_layers):
            below = x if l == 0 else bs[l - 1]
            logits = fixed[l] if l in fixed else self.encoder_logits(params, l, below)
            out = out + log_bernoulli(logits, bs[l])
        return out

    def neg_elbo(self, params: Params, x: Array, bs: list[Array], fixed: dict[int, Array] = {}) -> Array:
        """f(b) = log q(b|x) - log p(x, b): the negative single-sample ELBO."""
        return self.log_posterior(params, x, bs, fixed) - self.log_joint(params, x, bs)

    def continue_sampling(
        self,
        params: Params,
        x: Array,
        bs: list[Array],
        noise: Array,
        temperatures: Array | None = None,
    ) -> list[Array]:
        """Extends ``bs`` (layers 1..k) to all L layers with uniform ``noise[l]`` for layer l.

        Hard: b_l = 1[z_l > 0]; with ``temperatures``: relaxed sigma(z_l / lambda_l), where
        z_l = logits_l + logit(noise_l) and logits_l come from the previous (relaxed) layer.
        """
        bs = list(bs)
        for l in range(len(bs), self.num_layers):
            below = x if l == 0 else bs[-1]
            z = self.encoder_logits(params, l, below) + jnp.log(noise[l]) - jnp.log1p(-noise[l])
            bs.append((z > 0).astype(z.dtype) if temperatures is None else bernoulli_soft(z, temperatures[l]))
        return bs

    def sample_posterior(self, params: Params, x: Array, key: Array) -> list[Array]:
        """b ~ q(b | x), all layers."""
        return self.continue_sampling(params, x, [], uniform_open(key, (self.num_layers, self.num_latents)))

    def elbo_sample(self, params: Params, x: Array, key: Array) -> Array:
        """One Monte Carlo sample of the ELBO: -f(b) with b ~ q(b|x)."""
        return -self.neg_elbo(params, x, self.sample_posterior(params, x, key))

    def sample(self, params: Params, key: Array) -> Array:
        """Ancestral sample from the prior; returns the pixel probabilities sigma(d_1(b_1))."""
        keys = jax.random.split(key, self.num_layers)
        b = jax.random.bernoulli(keys[-1], jax.nn.sigmoid(params["prior"])).astype(jnp.float32)
        for l in range(self.num_layers - 1, 0, -1):
            b = jax.random.bernoulli(keys[l - 1], jax.nn.sigmoid(self.decoder_logits(params, l, b))).astype(jnp.float32)
        return jax.nn.sigmoid(self.decoder_logits(params, 0, b))


# -------------------------------------------------------------------------- the control variate


def init_control_variate(key: Array, estimator: str, sbn: SBN, cfg: ml_collections.ConfigDict) -> dict:
    """REBAR: per-layer eta and log temperature; RELAX: plus one r MLP per layer."""
    if estimator == "reinforce":
        return {}
    L = sbn.num_layers
    cv = {
        "eta": jnp.full((L,), cfg.init_eta, jnp.float32),
        "log_temperature": jnp.full((L,), np.log(cfg.init_temperature), jnp.float32),
    }
    if estimator == "relax":
        keys = jax.random.split(key, L)
        cv["r"] = [
            dense_init(
                keys[k],
                (sbn.data_dim + (k + 1) * sbn.num_latents, *(cfg.cv_hidden,) * cfg.cv_layers, 1),
                zero_last=True,
            )
            for k in range(L)
        ]
    return cv


def r_net(layers: list[dict], x: Array, prefix: list[Array], z: Array) -> Array:
    """r_rho(x, b_<k, z): ReLU MLP on (2x-1, 2b_<k - 1, z) (z on the logit scale)."""
    inp = jnp.concatenate([2.0 * x - 1.0, *[2.0 * b - 1.0 for b in prefix], z])
    return dense_apply(layers, inp, jax.nn.relu)[0]


# ------------------------------------------------------------------------------- the estimator


class Estimator:
    """One training-gradient draw for a batch: per-layer logit estimates, samples and f."""

    def __init__(self, sbn: SBN, estimator: str, shared_noise: bool = True):
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator={estimator!r}: expected one of {ESTIMATORS}")
        self.sbn = sbn
        self.estimator = estimator
        self.shared_noise = shared_noise

    def _layer(self, k: int, params: Params, cv: dict, x: Array, prefix: list[Array], noise: Array, logits: Array, key: Array):
        """Layer k's estimate for one data point: ``(g_k, (f(b), [b_1..b_L]))``."""
        sbn = self.sbn

        def f(b):
            bs = sbn.continue_sampling(params, x, [*prefix, b], noise)
            value = sbn.neg_elbo(params, x, bs, fixed={k: logits})
            return value, (value, bs)  # aux: f(b) and the samples, at the hard b

        if self.estimator == "reinforce":
            g, (fb, bs) = est.reinforce(f, logits, key=key, has_aux=True)
            return g, (fb, bs)

        def control_variate(cv, z):
            temperatures = jnp.exp(cv["log_temperature"])
            soft = bernoulli_soft(z, temperatures[k])
            bs = sbn.continue_sampling(params, x, [*prefix, soft], noise, temperatures)
            c = cv["eta"][k] * sbn.neg_elbo(params, x, bs, fixed={k: logits})
            if self.estimator == "relax":
                c = c + r_net(cv["r"][k], x, prefix, z)
            return c

        g, (fb, bs) = est.relax(
            f, control_variate, cv, logits, key=key, shared_noise=self.shared_noise, has_aux=True
        )
        return g, (fb, bs)

    def __call__(self, params: Params, cv: dict, x: Array, key: Array):
        """``(gs, aux)``: ``gs[k]`` (B, latents) estimates of d f_i / d logits_k for each data
        point i; ``aux = (f, samples, logits)`` with f (B,), the hard samples and the logits."""
        sbn = self.sbn
        batch = x.shape[0]
        key_noise, *layer_keys = jax.random.split(key, sbn.num_layers + 1)
        # the noise that draws layers above k inside f_k and c_k (one row per layer)
        noise = uniform_open(key_noise, (batch, sbn.num_layers, sbn.num_latents))
        prefix: list[Array] = []
        gs, all_logits = [], []
        fb = None
        for k in range(sbn.num_layers):
            below = x if k == 0 else prefix[-1]
            logits = jax.vmap(lambda v: sbn.encoder_logits(params, k, v))(below)
            one = lambda x_i, pre_i, n_i, lg_i, key_i: self._layer(k, params, cv, x_i, pre_i, n_i, lg_i, key_i)
            g, (fb, bs) = jax.vmap(one)(x, prefix, noise, logits, jax.random.split(layer_keys[k], batch))
            prefix.append(bs[k])
            gs.append(g)
            all_logits.append(logits)
        return tuple(gs), (fb, prefix, all_logits)


def surrogate_loss(sbn: SBN, params: Params, x: Array, samples: list[Array], gs) -> Array:
    """A scalar whose gradient is the training gradient of the batch mean of f.

    mean_i f_i(params; b fixed) gives the direct part; sum_k <g_k / B, logits_k(params)> with
    the estimates held constant pulls the score-function part back through the encoder.
    """
    batch = x.shape[0]
    direct = jnp.mean(jax.vmap(lambda x_i, bs_i: sbn.neg_elbo(params, x_i, bs_i))(x, samples))
    pulled = jnp.float32(0.0)
    for k in range(sbn.num_layers):
        below = x if k == 0 else samples[k - 1]
        logits = jax.vmap(lambda v: sbn.encoder_logits(params, k, v))(below)
        pulled = pulled + jnp.sum(jax.lax.stop_gradient(gs[k]) * logits) / batch
    return direct + pulled


def training_gradient(sbn: SBN, estimator: Estimator, params: Params, cv: dict, x: Array, key: Array, with_cv_grad: bool):
    """``(grad_params, grad_cv, metrics)`` for one batch; ``grad_cv`` is the single-sample
    gradient of the variance objective sum_k mean_i ||g_{k,i} / B||^2 (None unless asked)."""
    batch = x.shape[0]
    if with_cv_grad and estimator.estimator != "reinforce":
        # scaled by 1/B so that ||.||^2 is B times the objective; the gradient is divided back
        scaled = lambda cv_: (
            lambda out: (tuple(g / batch for g in out[0]), out[1])
        )(estimator(params, cv_, x, key))
        (gs_scaled, aux), grad_cv = est.with_variance_grad(scaled, cv, has_aux=True)
        grad_cv = jax.tree.map(lambda d: d / batch, grad_cv)
        gs = tuple(g * batch for g in gs_scaled)
    else:
        gs, aux = estimator(params, cv, x, key)
        grad_cv = jax.tree.map(jnp.zeros_like, cv)
    fb, samples, _ = aux
    grad_params = jax.grad(lambda p: surrogate_loss(sbn, p, x, samples, gs))(params)
    metrics = {
        "loss": jnp.mean(fb),
        "elbo": -jnp.mean(fb),
        "logit_grad_sq": jnp.mean(jnp.stack([jnp.mean(g**2) for g in gs])),
    }
    return grad_params, grad_cv, metrics, gs


# ------------------------------------------------------------------------------------ configs


def _validate(cfg: ml_collections.ConfigDict) -> None:
    from jaxebm.data import IMAGE_NAMES

    if cfg.estimator not in ESTIMATORS:
        raise ValueError(f"estimator={cfg.estimator!r}: expected one of {ESTIMATORS}")
    v = cfg.vae
    if v.model not in MODELS:
        raise ValueError(f"vae.model={v.model!r}: expected one of {tuple(MODELS)}")
    for field in ("num_latents", "hidden", "cv_hidden", "cv_layers"):
        if not (isinstance(v[field], int) and v[field] > 0):
            raise ValueError(f"vae.{field} must be a positive integer, got {v[field]!r}")
    if not v.init_temperature > 0:
        raise ValueError(f"vae.init_temperature must be > 0, got {v.init_temperature}")
    if not 0.0 < v.binarize_threshold < 1.0:
        raise ValueError(f"vae.binarize_threshold must be in (0, 1), got {v.binarize_threshold}")
    if cfg.data.name not in IMAGE_NAMES:
        raise ValueError(f"data.name={cfg.data.name!r}: the discrete VAE needs an image dataset, one of {IMAGE_NAMES}")
    e = cfg.eval
    if not (isinstance(e.variance_samples, int) and e.variance_samples > 1):
        raise ValueError(f"eval.variance_samples must be an integer > 1, got {e.variance_samples!r}")
    if not (isinstance(e.elbo_samples, int) and e.elbo_samples > 0):
        raise ValueError(f"eval.elbo_samples must be a positive integer, got {e.elbo_samples!r}")
    if not (isinstance(e.chunk, int) and e.chunk > 0):
        raise ValueError(f"eval.chunk must be a positive integer, got {e.chunk!r}")


def binarize(x: Array | np.ndarray, n_bins: int, threshold: float) -> Array:
    """1[v / (n_bins - 1) > threshold], flattened to (batch, D) float32 (numpy in, numpy out)."""
    xp = np if isinstance(x, np.ndarray) else jnp
    flat = xp.reshape(x, (x.shape[0], -1)).astype(xp.float32) / xp.float32(n_bins - 1)
    return (flat > threshold).astype(xp.float32)


# --------------------------------------------------------------------------------- the method


class DiscreteVAE:
    """State init, the jitted step, ELBO evaluation and the gradient-variance probe."""

    def __init__(self, cfg: ml_collections.ConfigDict, data_dim: int, n_bins: int, output_bias: Array | None):
        self.cfg = cfg
        v = cfg.vae
        self.n_bins = n_bins
        self.sbn = SBN(v.model, data_dim, v.num_latents, v.hidden)
        self.estimator = Estimator(self.sbn, cfg.estimator, v.shared_noise)
        self.output_bias = output_bias
        self.opt_model = make_optimizer(cfg.optim)
        self.opt_cv = make_optimizer(cfg.cv_optim, "cv_optim")
        no_decay = ml_collections.ConfigDict(cfg.cv_optim.to_dict())
        no_decay.weight_decay = 0.0
        self.opt_cv_scalars = make_optimizer(no_decay, "cv_optim")

    def binarize(self, x) -> Array:
        return binarize(x, self.n_bins, self.cfg.vae.binarize_threshold)

    def init(self, key: Array) -> dict:
        k_model, k_cv = jax.random.split(key)
        params = self.sbn.init(k_model, self.output_bias)
        cv = init_control_variate(k_cv, self.cfg.estimator, self.sbn, self.cfg.vae)
        return {"params": params, "cv": cv, "opt_model": self.opt_model.init(params), "opt_cv": self._cv_init(cv)}

    # the control variate's scalars (eta, temperature) get no weight decay, r does
    def _cv_init(self, cv: dict) -> dict:
        scalars = {k: v for k, v in cv.items() if k != "r"}
        return {"scalars": self.opt_cv_scalars.init(scalars), "r": self.opt_cv.init(cv.get("r", []))}

    def _cv_update(self, grad: dict, opt_state: dict, cv: dict) -> tuple[dict, dict]:
        scalars = {k: v for k, v in cv.items() if k != "r"}
        g_scalars = {k: v for k, v in grad.items() if k != "r"}
        up_s, st_s = self.opt_cv_scalars.update(g_scalars, opt_state["scalars"], scalars)
        new = optax.apply_updates(scalars, up_s)
        up_r, st_r = self.opt_cv.update(grad.get("r", []), opt_state["r"], cv.get("r", []))
        if "r" in cv:
            new["r"] = optax.apply_updates(cv["r"], up_r)
        return new, {"scalars": st_s, "r": st_r}

    def train_step(self, state: dict, batch: dict, key: Array) -> tuple[dict, dict]:
        x = self.binarize(batch["x"])
        grad_params, grad_cv, metrics, _ = training_gradient(
            self.sbn, self.estimator, state["params"], state["cv"], x, key, with_cv_grad=True
        )
        updates, opt_model = self.opt_model.update(grad_params, state["opt_model"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        cv, opt_cv = self._cv_update(grad_cv, state["opt_cv"], state["cv"])
        if "eta" in cv:
            metrics["eta"] = jnp.mean(cv["eta"])
            metrics["temperature"] = jnp.mean(jnp.exp(cv["log_temperature"]))
        return {"params": params, "cv": cv, "opt_model": opt_model, "opt_cv": opt_cv}, metrics

    # ------------------------------------------------------------------------------ evaluation

    def elbo(self, params: Params, x: Array, key: Array) -> Array:
        """The ELBO of each row of x (shape (N,)), each the mean of ``eval.elbo_samples`` draws."""
        n = self.cfg.eval.elbo_samples
        keys = jax.random.split(key, x.shape[0] * n).reshape((x.shape[0], n))
        one = lambda x_i, ks: jnp.mean(jax.vmap(lambda k: self.sbn.elbo_sample(params, x_i, k))(ks))
        return jax.vmap(one)(x, keys)

    def gradient_variance(self, state: dict, x: Array, key: Array) -> tuple[Array, Array]:
        """Mean over encoder weights of Var[training gradient], and mean over (layer, data,
        latent) of Var[per-logit estimate], from ``eval.variance_samples`` draws on batch x."""
        n = self.cfg.eval.variance_samples
        params, cv = state["params"], state["cv"]

        def draw(k):
            grad_params, _, _, gs = training_gradient(self.sbn, self.estimator, params, cv, x, k, with_cv_grad=False)
            return grad_params["encoder"], gs

        first = draw(jax.random.fold_in(key, n))  # a shift for a numerically safe variance

        def body(acc, k):
            total, total_sq = acc
            d = jax.tree.map(lambda a, b: a - b, draw(k), first)
            total = jax.tree.map(lambda s, v: s + v, total, d)
            total_sq = jax.tree.map(lambda s, v: s + v**2, total_sq, d)
            return (total, total_sq), None

        zeros = jax.tree.map(jnp.zeros_like, first)
        (s, s2), _ = jax.lax.scan(body, (zeros, zeros), jax.random.split(key, n))
        var = jax.tree.map(lambda a, b: (b - a**2 / n) / (n - 1), s, s2)
        enc_var, logit_var = var
        enc_leaves = jax.tree.leaves(enc_var)
        enc = sum(jnp.sum(v) for v in enc_leaves) / sum(v.size for v in enc_leaves)
        logit = jnp.mean(jnp.stack([jnp.mean(v) for v in logit_var]))
        return enc, logit


# ----------------------------------------------------------------------------------- figures


def plot_curves(records: list[dict], path: Path, title: str) -> Path | None:
    """Train ELBO (logged means), validation ELBO and log10 gradient variance over steps."""
    from jaxebm.eval import plots  # sets the Agg backend
    import matplotlib.pyplot as plt

    train = [(r["step"], r["elbo"]) for r in records if r["split"] == "train" and r.get("elbo") is not None]
    evals = [r for r in records if r["split"] == "eval" and r.get("val_elbo") is not None]
    if not train and not evals:
        return None
    fig, (ax_elbo, ax_var) = plt.subplots(1, 2, figsize=(10, 3.8))
    if train:
        ax_elbo.plot(*zip(*train), lw=1, label="train (running mean)")
    if evals:
        ax_elbo.plot([r["step"] for r in evals], [r["val_elbo"] for r in evals], "o-", label="validation")
        ax_var.plot([r["step"] for r in evals], [r.get("log10_grad_var") for r in evals], "o-", label="encoder weights")
        ax_var.plot([r["step"] for r in evals], [r.get("log10_logit_grad_var") for r in evals], "s-", label="logits")
    plots.curve_panels(ax_elbo, ax_var, ("step", "ELBO (nats)", title),
                       ("step", "log10 Var[gradient]", "gradient variance"))
    return plots.save_figure(fig, path)


# ------------------------------------------------------------------------------------- build


def build(cfg: ml_collections.ConfigDict) -> Method:
    from jaxebm import data as data_lib
    from jaxebm.eval.plots import save_samples

    _validate(cfg)
    dataset = data_lib.load(cfg.data, seed=cfg.seed)
    n_bins = int(dataset.n_bins or 256)
    train_x = binarize(dataset.split("train")["x"], n_bins, cfg.vae.binarize_threshold)
    mean = np.clip(train_x.mean(axis=0), 0.001, 0.999)
    output_bias = (np.log(mean) - np.log1p(-mean)).astype(np.float32)
    image_shape = dataset.example_shape
    vae = DiscreteVAE(cfg, int(np.prod(image_shape)), n_bins, output_bias)
    splits = {name: binarize(dataset.split(name)["x"], n_bins, cfg.vae.binarize_threshold) for name in ("validation", "test")}
    variance_batch = vae.binarize(dataset.train_batch(0)["x"])
    chunk = cfg.eval.chunk

    # keys are derived inside the jitted functions: eager key ops would each compile on their own
    elbo_chunk = jax.jit(lambda params, x, key, i: vae.elbo(params, x, jax.random.fold_in(key, i)))
    variance = jax.jit(lambda state, x, key: vae.gradient_variance(state, x, jax.random.fold_in(key, 2)))

    def split_elbo(params, x, key, split_id: int) -> float:
        """Mean ELBO over a split, in chunks of ``eval.chunk`` rows (the last zero-padded and
        the padding dropped), so one compiled program serves every split size."""
        n = x.shape[0]
        if n == 0:
            return float("nan")
        size = min(chunk, n)
        values = []
        for i, start in enumerate(range(0, n, size)):
            part = x[start:start + size]
            m = part.shape[0]
            part = np.concatenate([part, np.zeros((size - m, x.shape[1]), x.dtype)])
            values.append(np.asarray(elbo_chunk(params, part, key, split_id * 1_000_000 + i))[:m])
        return float(np.mean(np.concatenate(values)))

    def evaluate(state, key):
        enc_var, logit_var = (float(v) for v in variance(state, variance_batch, key))
        return {
            "val_elbo": split_elbo(state["params"], splits["validation"], key, 0),
            "test_elbo": split_elbo(state["params"], splits["test"], key, 1),
            "grad_var": enc_var,
            "log10_grad_var": float(np.log10(enc_var)) if enc_var > 0 else float("-inf"),
            "logit_grad_var": logit_var,
            "log10_logit_grad_var": float(np.log10(logit_var)) if logit_var > 0 else float("-inf"),
        }

    def sample_probs(params, key, num):
        return jax.vmap(lambda k: vae.sbn.sample(params, k))(jax.random.split(key, num))

    sample_probs = jax.jit(sample_probs, static_argnums=2)

    def sample(state, key, num):
        probs = sample_probs(state["params"], key, num)
        return np.asarray(probs).reshape((num, *image_shape))

    def write_figures(state, key, directory: Path) -> list[Path]:
        directory = Path(directory)
        paths = [save_samples(sample(state, key, 64), directory / "vae_samples.png")]
        metrics_file = directory.parent / "metrics.jsonl"
        if metrics_file.is_file():
            records = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
            title = f"{cfg.vae.model} {cfg.estimator.upper()} on {cfg.data.name}"
            curve = plot_curves(records, directory / "vae_elbo_variance.png", title)
            if curve is not None:
                paths.append(curve)
        return paths

    return Method(
        init=vae.init,
        train_step=vae.train_step,
        evaluate=evaluate,
        sample=sample,
        data=dataset,
        write_figures=write_figures,
    )
