r"""The LSD goodness-of-fit test on the perturbed Gaussian-Bernoulli RBM, against KSD tests.

Problem (one per repetition ``r`` and perturbation ``sigma``): the data come from an RBM
:math:`p` (``d_x = 50, d_h = 40``, ``B`` entries +-1, ``b, c ~ N(0, I)``; 2000 Gibbs sweeps); the
model :math:`q_\sigma` is the same RBM with ``B + sigma * N`` for a noise matrix ``N ~ N(0, 1)``.
H0: q = p holds exactly at sigma = 0, so the rejection rate there is the test's size, and above
it is the test's power. Each repetition draws its own ``p``, its own 1000 points and its own
``N``; the sigmas of one repetition share them (common random numbers: every sigma's rejection
rate is still an average over independent repetitions).

**LSD test** (Grathwohl et al., 2020, the reference ``lsd_test.py`` run): the 1000 points split
into 800 training, 100 validation and 100 test points. A critic ``f: R^50 -> R^50``
(SmallMLP, 300 Swish units, dropout 0.5) maximizes the power objective
:math:`\bar t / \hat\sigma_t - \lambda\,\overline{\|f\|^2}` of the Stein statistic
:math:`t = s_q^\top f + \operatorname{tr}\,\partial f / \partial x` on the training points
(Hutchinson trace, one Gaussian probe per point, as the reference's run; ``lsd.trace='exact'``
uses the MLP's exact trace in closed form instead, at the same cost, like the reference's
``--exact_trace``; Adam 1e-3 with L2 weight decay 5e-4;
``lambda = 0.5``; 1000 steps on the full 800 points). After steps 0, 100, ..., 900 (``val_every``)
the critic, without dropout and with the exact trace, is scored on the validation points by
:math:`\bar t / \hat\sigma_t`; the test z-score :math:`\sqrt{n}\,\bar t/\hat\sigma_t` on the test
points at the best validation score is the test statistic (model selection; the test points
never steer training or selection). Reject when ``z > Phi^-1(1 - alpha)``, alpha = 0.05.

Option ``lsd.cross_fit = K`` (not in the paper): the single split scores only ``n_test`` of
the 1000 points, and the z-score grows with the square root of the points scored. With ``K > 1``
the points are cut into K blocks of ``n_test`` (``K n_test`` must be all of them); critic ``k``
is trained and validated, as above, on the points outside block ``k`` and scores block ``k``,
so every point is scored once by a critic that never saw it. The test statistic is the one
z-score :math:`\sqrt{n}\,\bar t/\hat\sigma_t` over all ``K n_test`` statistics. Under H0
each statistic still has mean zero given its critic, but the folds' critics share training
points, so the pooled statistics are not independent and the normal approximation is an
assumption that the measured size at sigma = 0 checks. Costs K critics per problem.
``configs/lsd.py:rbm_test`` runs K = 5 (700 / 100 / 200 per fold) by default.

Option ``lsd.ensemble = M`` (not in the paper): M critics per fold, each from its own
initialization, with its own dropout masks and its own validation selection; a point's statistic
is the mean of the M selected critics' statistics, which is the Stein statistic of their mean
field :math:`\bar f = \frac1M \sum_m f_m` (the statistic is linear in f). Every member of fold
``k`` is trained and selected without block ``k``, so :math:`\bar f` is too and the test stays
valid; averaging cuts the variance of the learned field. Member 0 draws the keys an
``ensemble = 1`` run draws, so it is that run's critic. Costs M times the critics.

Option ``critic.score_input`` (not in the paper): the critic sees the model's score as extra
input features, :math:`f(x) = \mathrm{MLP}([x, s_q(x)])` with a ``2 d_x -> d_x`` MLP. The test
already needs :math:`s_q`, so this is generic; it lets the critic build directions out of
:math:`s_q` (the oracle critic is :math:`s_q - s_p`) instead of learning them from 800 points.
Its Jacobian is :math:`J_x + J_s\,\nabla s_q`, so the training trace is the Hutchinson
estimate :math:`\epsilon^\top J_f \epsilon` from one forward-mode product through both the
score and the MLP (``lsd.trace`` must be a probe kind); validation and test use the exact trace
of the composed field, as always.

Option ``critic.input_noise = s`` (not in the paper): the critic trains on ``x + s N(0, I)``
(the model's score taken at the perturbed points), a smoothing regularizer against memorizing
the training points; validation and test points stay clean, so every critic still gives a
valid test.

**Baselines** on all 1000 points of the same problem (as the reference gives kgof 200 + 800):
the quadratic-time KSD with a median-heuristic Gaussian kernel and a 1000-replicate wild
bootstrap (V-statistic, Rademacher weights: kgof's ``KernelSteinTest``), and the linear-time
KSD with its normal approximation.

**Engineering:** the critics of all ``len(sigmas) * n_reps`` problems (``cross_fit *
ensemble`` each) live stacked in one state (each flattened to a vector, so Adam runs over one
``(P, n_params)`` array; Adam is elementwise, so this is exactly one Adam per critic); one
harness step updates every critic once, in chunks of ``lsd.chunk`` critics (``lax.map``) to
bound memory. The per-critic best validation score and the test z-score and per-sample test
statistics at that point are kept in the state, so training resumes exactly.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import ml_collections
import numpy as np
import optax
from flax import nnx

from jaxebm.distributions import rbm as rbm_lib
from jaxebm.methods.lsd import (TRACES, Flat, check_choice, check_critic, check_positive,
                                critic_loss_fn)
from jaxebm.nn.swish import SmallMLP
from jaxebm.estimators.divergence import sample_probe
from jaxebm.stein import SteinTerms, ksd_test, linear_ksd_test, stein_statistic, stein_z_test
from jaxebm.train.loop import eval_key
from jaxebm.train.method import Method
from jaxebm.train.optim import make_optimizer

Array = jax.Array
TESTS = ("lsd", "ksd", "lksd")
TEST_NAMES = {"lsd": "LSD (learned critic)", "ksd": "KSD (quadratic, bootstrap)",
              "lksd": "linear-time KSD"}


def sigma_tag(sigma: float) -> str:
    """``0.02 -> 's0.02'``: the suffix of the metric names."""
    return f"s{sigma:g}"


# Options added after workdirs were written, with the value that turns each off: a workdir whose
# config.json predates one still evaluates and resumes as it ran.
LATER_OPTIONS = {("critic", "input_noise"): 0.0, ("lsd", "ensemble"): 1}


def later_option(cfg: ml_collections.ConfigDict, group: str, field: str):
    """``cfg[group][field]``, or its off value if the config predates it."""
    return cfg[group].get(field, LATER_OPTIONS[group, field])


def _validate(cfg: ml_collections.ConfigDict) -> None:
    r, lsd = cfg.rbm, cfg.lsd
    for field in ("dim_x", "dim_h", "n_reps", "burn_in", "n_train", "n_val", "n_test"):
        check_positive(r[field], f"rbm.{field}", integer=True)
    for field in ("n_val", "n_test"):
        if r[field] < 2:
            raise ValueError(f"rbm.{field} must be >= 2 (a standard deviation is needed)")
    if len(r.sigmas) < 1 or any(float(s) < 0 for s in r.sigmas):
        raise ValueError(f"rbm.sigmas must be a non-empty tuple of values >= 0, got {r.sigmas}")
    if not cfg.data.batch_size <= r.n_train:
        raise ValueError(f"data.batch_size={cfg.data.batch_size} (the critic's batch) exceeds "
                         f"rbm.n_train={r.n_train}")
    check_critic(cfg, TRACES)
    if not 0.0 <= cfg.critic.dropout < 1.0:
        raise ValueError(f"critic.dropout must be in [0, 1), got {cfg.critic.dropout}")
    if not later_option(cfg, "critic", "input_noise") >= 0.0:
        raise ValueError(f"critic.input_noise must be >= 0, got {cfg.critic.input_noise}")
    if lsd.trace == "exact" and cfg.critic.n_hidden > 2:
        raise ValueError("lsd.trace='exact' needs critic.n_hidden <= 2 (closed-form MLP trace)")
    if lsd.trace == "exact" and cfg.critic.score_input:
        raise ValueError("critic.score_input=True needs a Hutchinson lsd.trace ('gaussian' or "
                         "'rademacher'): the closed-form trace is for a critic of x alone")
    check_positive(lsd.cross_fit, "lsd.cross_fit", integer=True)
    check_positive(later_option(cfg, "lsd", "ensemble"), "lsd.ensemble", integer=True)
    if lsd.cross_fit > 1 and lsd.cross_fit * r.n_test != r.n_train + r.n_val + r.n_test:
        raise ValueError(
            f"lsd.cross_fit={lsd.cross_fit} needs the {lsd.cross_fit} test folds to tile the data: "
            f"cross_fit * rbm.n_test = {lsd.cross_fit * r.n_test} must equal rbm.n_train + "
            f"rbm.n_val + rbm.n_test = {r.n_train + r.n_val + r.n_test}")
    if not 0.0 < lsd.alpha < 1.0:
        raise ValueError(f"lsd.alpha must be in (0, 1), got {lsd.alpha}")
    check_positive(lsd.val_every, "lsd.val_every", integer=True)
    check_positive(lsd.chunk, "lsd.chunk", integer=True)
    check_positive(cfg.ksd.n_boot, "ksd.n_boot", integer=True)
    check_positive(cfg.ksd.chunk, "ksd.chunk", integer=True)
    check_positive(cfg.eval.chunk, "eval.chunk", integer=True)
    check_choice(cfg.ksd.statistic, ("u", "v"), "ksd.statistic")


def critic_input(q: rbm_lib.RBM, x: Array, score_input: bool) -> Array:
    """The critic MLP's input for the batch ``x`` (n, d_x): ``x``, or ``[x, s_q(x)]`` (n, 2 d_x)."""
    if not score_input:
        return x
    return jnp.concatenate([x, rbm_lib.score(q, x)], axis=1)


def training_terms(critic: SmallMLP, q: rbm_lib.RBM, x: Array, *, score_input: bool,
                   trace: str, eps: Array | None = None,
                   key: Array | None = None) -> SteinTerms:
    """Stein terms ``s_q^T f + tr df/dx`` and ``|f|^2`` of the critic field on the batch ``x``.

    ``trace='exact'``: the MLP's closed-form trace (``score_input`` must be False). Otherwise the
    Hutchinson estimate ``eps^T J eps`` for the probes ``eps`` (n, d_x), one forward-mode
    product of the composed field (through ``s_q`` too when ``score_input``). ``key`` draws
    dropout masks (one per row); ``None`` runs without dropout.
    """
    if trace == "exact":
        if score_input:
            raise ValueError("the exact training trace needs score_input=False")
        fx, tr = critic.value_and_trace(x, key=key)
        sq = rbm_lib.score(q, x)
    else:
        if eps is None:
            raise ValueError(f"trace={trace!r} needs the probes eps")
        if score_input:
            sq, dsq = jax.jvp(lambda v: rbm_lib.score(q, v), (x,), (eps,))
            inp = jnp.concatenate([x, sq], axis=1)
            d_inp = jnp.concatenate([eps, dsq], axis=1)
        else:
            sq, inp, d_inp = rbm_lib.score(q, x), x, eps
        fx, jeps = critic.jvp(inp, d_inp, key=key)
        tr = jnp.sum(eps * jeps, 1)
    return SteinTerms(stat=jnp.sum(sq * fx, 1) + tr, sq_norm=jnp.sum(fx * fx, 1))


def build(cfg: ml_collections.ConfigDict) -> Method:
    _validate(cfg)
    r, lsd = cfg.rbm, cfg.lsd
    sigmas = tuple(float(s) for s in r.sigmas)
    n_sig, n_reps = len(sigmas), r.n_reps
    n_problems = n_sig * n_reps
    folds, members = int(lsd.cross_fit), int(later_option(cfg, "lsd", "ensemble"))
    # critic c: member c // n_base, and j = c % n_base: problem j // folds, test fold j % folds
    n_base = n_problems * folds
    n_critics = n_base * members
    n_total = r.n_train + r.n_val + r.n_test
    dx = r.dim_x
    batch = cfg.data.batch_size
    threshold = float(jsp.ndtri(1.0 - lsd.alpha))

    score_input = bool(cfg.critic.score_input)
    input_noise = float(later_option(cfg, "critic", "input_noise"))

    def make_critic(rngs):
        in_dim = 2 * dx if score_input else dx
        return SmallMLP(in_dim, dx, hidden=cfg.critic.hidden, n_hidden=cfg.critic.n_hidden,
                        dropout_rate=cfg.critic.dropout, init=cfg.critic.init, rngs=rngs)

    flat = Flat(lambda: make_critic(nnx.Rngs(0)))
    optimizer = make_optimizer(cfg.optim)
    c_loss = critic_loss_fn(lsd.critic_objective, lsd.l2, lsd.num_const)
    sig_arr = np.asarray(sigmas, np.float32)

    def problem_rbm(state, i):
        """The model q of problem ``i = sigma_index * n_reps + rep``, and its rep index."""
        s, rep = i // n_reps, i % n_reps
        p = jax.tree.map(lambda a: a[rep], state["rbm"])
        sigma = jnp.asarray(sig_arr)[s]
        return p._replace(B=p.B + sigma * state["noise"][rep]), rep

    def critic_data(state, c):
        """Critic ``c``'s model q and its problem's points, ordered train | validation | test.

        Fold ``k`` tests on the ``k``-th block of ``n_test`` points counted from the end (fold 0:
        the single split's test points); rolling by ``k n_test`` moves that block to the end.
        """
        j = c % n_base
        q, rep = problem_rbm(state, j // folds)
        x = state["data"][rep]
        return q, (x if folds == 1 else jnp.roll(x, (j % folds) * r.n_test, axis=0))

    def init(key):
        k_rbm, k_data, k_noise, k_critic = jax.random.split(key, 4)
        rbms = jax.vmap(lambda k: rbm_lib.init(k, dx, r.dim_h))(jax.random.split(k_rbm, n_reps))
        data = jax.vmap(lambda p, k: rbm_lib.sample(p, k, n_total, burn_in=r.burn_in))(
            rbms, jax.random.split(k_data, n_reps))
        noise = jax.random.normal(k_noise, (n_reps, dx, r.dim_h), jnp.float32)
        # member m > 0 from its own key; member 0 from the keys of an ensemble-1 run
        keys = jnp.concatenate([jax.random.split(
            k_critic if m == 0 else jax.random.fold_in(k_critic, m), n_base)
            for m in range(members)])
        critics = jax.vmap(lambda k: Flat.of(make_critic(nnx.Rngs(k))))(keys)
        return {"rbm": rbms, "data": data, "noise": noise, "critic": critics,
                "opt": optimizer.init(critics),
                "best_val": jnp.full((n_critics,), -jnp.inf, jnp.float32),
                "best_z": jnp.zeros((n_critics,), jnp.float32),
                # the selected critic's per-sample statistics on its test fold, averaged over
                # the members and pooled over the folds of a problem by ``problem_z``
                "best_test_stat": jnp.zeros((n_critics, r.n_test), jnp.float32),
                "best_step": jnp.full((n_critics,), -1, jnp.int32),
                "step": jnp.zeros((), jnp.int32)}

    # ---------------------------------------------------------------- training

    def problem_loss(params, q, x, key):
        k_eps, k_drop, k_batch, k_noise = jax.random.split(key, 4)
        if batch < x.shape[0]:
            x = x[jax.random.permutation(k_batch, x.shape[0])[:batch]]
        if input_noise > 0:  # train on p convolved with N(0, input_noise^2 I); s_q at the noisy x
            x = x + input_noise * jax.random.normal(k_noise, x.shape, x.dtype)
        # exact: closed form for the 2-hidden-layer MLP, as cheap as one probe
        eps = None if lsd.trace == "exact" else sample_probe(k_eps, x.shape, lsd.trace,
                                                             dtype=x.dtype)
        terms = training_terms(flat.module(params), q, x, score_input=score_input,
                               trace=lsd.trace, eps=eps, key=k_drop)
        return c_loss(terms), jnp.mean(terms.stat)

    def grads_of_all(state, key):
        def one(args):
            params, c = args
            q, x = critic_data(state, c)
            (loss, stat), g = jax.value_and_grad(problem_loss, has_aux=True)(
                params, q, x[: r.n_train], jax.random.fold_in(key, c))
            return g, loss, stat

        idx = jnp.arange(n_critics, dtype=jnp.int32)
        return jax.lax.map(one, (state["critic"], idx), batch_size=min(lsd.chunk, n_critics))

    def exact_scores(state, critics):
        """Validation power ``mean/std``, test z-score and per-sample test statistics of every
        critic (exact trace)."""
        def one(args):
            params, c = args
            q, x = critic_data(state, c)
            critic = flat.module(params)
            # no key: no dropout
            per_sample = lambda xi: critic(critic_input(q, xi[None], score_input))[0]  # noqa: E731
            x = x[r.n_train:]
            stat = stein_statistic(per_sample, x, rbm_lib.score(q, x), trace="exact").stat
            val, test = stat[: r.n_val], stat[r.n_val:]
            val_power = jnp.mean(val) / (jnp.std(val, ddof=1) + lsd.num_const)
            return val_power, stein_z_test(test, num_const=lsd.num_const).z, test

        idx = jnp.arange(n_critics, dtype=jnp.int32)
        return jax.lax.map(one, (critics, idx), batch_size=min(lsd.chunk, n_critics))

    def select(state, critics):
        val, z, test = exact_scores(state, critics)
        better = val > state["best_val"]  # strict, as the reference: ties keep the earlier
        return {"best_val": jnp.where(better, val, state["best_val"]),
                "best_z": jnp.where(better, z, state["best_z"]),
                "best_test_stat": jnp.where(better[:, None], test, state["best_test_stat"]),
                "best_step": jnp.where(better, state["step"], state["best_step"])}

    def problem_z(state) -> np.ndarray:
        return problem_z_scores(state["best_test_stat"], members=members, n_problems=n_problems,
                                num_const=lsd.num_const)

    def train_step(state, batch_, key):
        del batch_  # the data live in the state
        grads, losses, stats = grads_of_all(state, key)
        updates, opt = optimizer.update(grads, state["opt"], state["critic"])
        critics = optax.apply_updates(state["critic"], updates)
        # Validate after the update of steps 0, val_every, 2 val_every, ... (reference order).
        best = jax.lax.cond(
            state["step"] % lsd.val_every == 0, lambda: select(state, critics),
            lambda: {k: state[k] for k in ("best_val", "best_z", "best_test_stat", "best_step")})
        new = dict(state, critic=critics, opt=opt, step=state["step"] + 1, **best)
        metrics = {"loss": jnp.mean(losses), "stat": jnp.mean(stats),
                   "best_val_power": jnp.mean(jnp.where(jnp.isfinite(new["best_val"]),
                                                        new["best_val"], 0.0))}
        return new, metrics

    # ---------------------------------------------------------------- the tests

    # The kernel tests' bootstrap keys: the key the harness's final evaluation passes (at step
    # train.num_steps), whatever key a call passes, so that every evaluation, ``jaxebm eval``
    # and the figures' per-problem decisions agree (the kernel tests do not depend on training).
    ksd_key = eval_key(cfg.seed, cfg.train.num_steps)

    @jax.jit
    def kernel_tests(state, key):
        def one(i):
            q, rep = problem_rbm(state, i)
            x = state["data"][rep]
            sq = rbm_lib.score(q, x)
            quad = ksd_test(x, sq, key=jax.random.fold_in(key, i), alpha=lsd.alpha,
                            n_boot=cfg.ksd.n_boot, statistic=cfg.ksd.statistic)
            lin = linear_ksd_test(x, sq, alpha=lsd.alpha)
            return quad.p_value, lin.p_value

        idx = jnp.arange(n_problems, dtype=jnp.int32)
        return jax.lax.map(one, idx, batch_size=min(cfg.ksd.chunk, n_problems))

    def decisions(state, key):
        """LSD's z-scores, and every test's p-values and rejections, each ``(n_sigmas, n_reps)``
        (LSD's p-value from its one-sided z-test; reject when p < alpha, for LSD when
        z > Phi^-1(1 - alpha))."""
        del key  # the kernel tests use ksd_key; LSD's statistics are deterministic
        quad, lin = kernel_tests(state, ksd_key)
        shape = (n_sig, n_reps)
        z = problem_z(state).reshape(shape)
        p = {"lsd": np.asarray(jsp.ndtr(-z)), "ksd": np.asarray(quad).reshape(shape),
             "lksd": np.asarray(lin).reshape(shape)}
        rej = {"lsd": z > threshold, "ksd": p["ksd"] < lsd.alpha, "lksd": p["lksd"] < lsd.alpha}
        return z, p, rej

    def evaluate(state, key):
        z, _, rej = decisions(state, key)
        out = {"n_reps": float(n_reps), "critic_steps": float(state["step"]),
               "validated": float(np.max(np.asarray(state["best_step"])) >= 0)}
        for name, table in rej.items():
            for j, sigma in enumerate(sigmas):
                p = float(np.mean(table[j]))
                out[f"power_{name}_{sigma_tag(sigma)}"] = p
                out[f"stderr_{name}_{sigma_tag(sigma)}"] = float(np.sqrt(p * (1 - p) / n_reps))
        for j, sigma in enumerate(sigmas):
            out[f"mean_z_lsd_{sigma_tag(sigma)}"] = float(np.mean(z[j]))
            # at sigma = 0 about 1 if the z-test's normal approximation holds
            out[f"sd_z_lsd_{sigma_tag(sigma)}"] = float(np.std(z[j], ddof=1)) if n_reps > 1 else 0.0
        return out

    def sample(state, key, num):
        """Gibbs samples (``rbm.burn_in`` sweeps) from repetition 0's data distribution p."""
        p = jax.tree.map(lambda a: a[0], state["rbm"])
        return np.asarray(jax.jit(rbm_lib.sample, static_argnums=(2,),
                                  static_argnames=("burn_in",))(p, key, num, burn_in=r.burn_in))

    def write_figures(state, key, directory: Path):
        """``power.png``, ``power_table.md``, and ``decisions.csv``: per problem, LSD's z and
        every test's p-value and decision."""
        directory = Path(directory)
        z, p, rej = decisions(state, key)
        power = {name: table.mean(axis=1) for name, table in rej.items()}
        n = np.full(n_sig, n_reps)
        path = plot_power(sigmas, power, n, directory / "power.png", alpha=lsd.alpha,
                          title=f"RBM d_x={dx}, d_h={r.dim_h}: {n_reps} repetitions per sigma")
        (directory / "power_table.md").write_text(power_table(sigmas, power, n) + "\n")
        rows = ["sigma,rep,lsd_z," + ",".join(f"{t}_p,{t}_reject" for t in TESTS)]
        for j, sigma in enumerate(sigmas):
            for rep in range(n_reps):
                rows.append(f"{sigma:g},{rep},{z[j, rep]:.4f}," + ",".join(
                    f"{p[t][j, rep]:.6g},{int(rej[t][j, rep])}" for t in TESTS))
        (directory / "decisions.csv").write_text("\n".join(rows) + "\n")
        return [path]

    return Method(init=init, train_step=train_step, evaluate=evaluate, sample=sample,
                  data=None, write_figures=write_figures)


def problem_z_scores(best_test_stat, *, members: int, n_problems: int,
                     num_const: float) -> np.ndarray:
    """Each problem's test z-score from the selected critics' per-point statistics
    ``(members * n_problems * folds, n_test)`` (the state's ``best_test_stat``, member-major):
    over its single test split, or, cross-fitted, over all of its points, each scored by the
    critics of the fold that held it out; a point's statistic is the members' mean."""
    stats = jnp.reshape(jnp.asarray(best_test_stat), (members, n_problems, -1)).mean(axis=0)
    return np.asarray(jax.vmap(lambda t: stein_z_test(t, num_const=num_const).z)(stats))


def _stderr(power: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Binomial standard error of a rejection rate over ``n`` independent repetitions."""
    return np.sqrt(power * (1.0 - power) / n)


def power_table(sigmas, power: dict[str, np.ndarray], n: np.ndarray) -> str:
    """Markdown table of rejection rates +- one standard error, one row per test."""
    lines = ["Rejection rates (+- one standard error); repetitions per sigma: "
             + ", ".join(f"{s:g}: {int(k)}" for s, k in zip(sigmas, n)), "",
             "| test | " + " | ".join(f"sigma={s:g}" for s in sigmas) + " |",
             "|---|" + "---|" * len(sigmas)]
    for name, p in power.items():
        lines.append(f"| {name} | " + " | ".join(
            f"{a:.2f} +- {b:.2f}" for a, b in zip(p, _stderr(p, n))) + " |")
    return "\n".join(lines)


def plot_power(sigmas, power: dict[str, np.ndarray], n: np.ndarray, path: Path, *,
               alpha: float, title: str) -> Path:
    """Power (size at sigma = 0) against sigma with standard-error bars, one curve per test."""
    from jaxebm.eval import plots  # sets the Agg backend
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, p in power.items():
        ax.errorbar(sigmas, p, yerr=_stderr(p, n), marker="o", capsize=3,
                    label=TEST_NAMES[name])
    ax.axhline(alpha, color="gray", linestyle=":", label=f"alpha = {alpha:g}")
    ax.set_xlabel("sigma (perturbation of B)")
    ax.set_ylabel("rejection rate (power; size at sigma = 0)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return plots.save_figure(fig, path)


def pool_workdirs(workdirs) -> tuple[list[float], dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Pools the rejections of independent ``rbm_test`` workdirs (different seeds).

    A workdir may hold a subset of the sigmas; per sigma, the rejection counts of the workdirs
    that have it are summed. Returns ``(sigmas, power per test, repetitions, mean LSD z)``.
    """
    import json

    dirs = [Path(d) for d in workdirs]
    evals = [json.loads((d / "eval.json").read_text()) for d in dirs]
    sigmas = sorted({float(s) for d in dirs
                     for s in json.loads((d / "config.json").read_text())["rbm"]["sigmas"]})
    tags = [sigma_tag(s) for s in sigmas]
    n = np.array([sum(e["n_reps"] for e in evals if f"power_lsd_{g}" in e) for g in tags])
    power = {t: np.array([sum(e[f"power_{t}_{g}"] * e["n_reps"] for e in evals
                              if f"power_{t}_{g}" in e) for g in tags]) / n for t in TESTS}
    mean_z = np.array([sum(e[f"mean_z_lsd_{g}"] * e["n_reps"] for e in evals
                           if f"mean_z_lsd_{g}" in e) for g in tags]) / n
    return sigmas, power, n, mean_z
