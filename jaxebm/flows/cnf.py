r"""Continuous normalizing flows on diffrax (FFJORD).

A block integrates :math:`dz/dt = f(t, z)` from the data :math:`z(0) = x` to
:math:`z(T)`, with the instantaneous change of variables

.. math:: \log p(x) = \log p(z(T)) + \int_0^T \operatorname{tr}\,\partial f/\partial z\,dt .

The end time is :math:`T = s^2` for a trainable :math:`s`. To make :math:`T` an ordinary
differentiable parameter the solve runs on :math:`u \in [0, 1]` with :math:`t = uT`:
:math:`dz/du = T f(uT, z)`; this is the same ODE, so the solver takes the same steps.

The state is ``(z, int_tr, kinetic, frobenius)`` with the trace exact or a Hutchinson estimate
whose probe is drawn once per solve and held fixed along the trajectory (as the FFJORD paper
requires for an unbiased estimate of the integral). The optional regularizers
:math:`\int \|f\|^2 dt` (kinetic energy) and :math:`\int \|\partial f/\partial z\|_F^2 dt` are
extra states excluded from the solver's error control. A failed solve (too many steps) gives
NaN, which the training harness treats as a divergence.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import diffrax
import jax
import jax.numpy as jnp
import optimistix

from jaxebm.estimators.divergence import divergence_and_frobenius

Array = jax.Array
Dynamics = Callable[[Any, Array, Array], Array]  # f(params, t, z) for one sample

SOLVERS = {"tsit5": diffrax.Tsit5, "dopri5": diffrax.Dopri5, "dopri8": diffrax.Dopri8}
ADJOINTS = ("recursive", "backsolve")
# Evaluations of f per attempted step for the FSAL Runge-Kutta solvers above (7 stages, the
# last reused), plus two for the initial step-size selection.
_EVALS_PER_STEP = {"tsit5": 6, "dopri5": 6, "dopri8": 12}


@dataclasses.dataclass(frozen=True)
class SolverConfig:
    solver: str = "tsit5"
    rtol: float = 1e-5
    atol: float = 1e-5
    adjoint: str = "recursive"
    max_steps: int = 1000
    # Recursive adjoint: solver states kept for the backward pass. 0 = diffrax's default
    # (about log(max_steps), recomputing the rest); max_steps = keep all, no recomputation,
    # cheap when the state is small (2-D and tabular data).
    checkpoints: int = 0

    def __post_init__(self):
        if self.solver not in SOLVERS:
            raise ValueError(f"solver={self.solver!r}: expected one of {sorted(SOLVERS)}")
        if self.adjoint not in ADJOINTS:
            raise ValueError(f"adjoint={self.adjoint!r}: expected one of {ADJOINTS}")
        if not (self.rtol > 0 and self.atol > 0 and self.max_steps > 0):
            raise ValueError("rtol, atol and max_steps must be positive")


@dataclasses.dataclass(frozen=True)
class BlockOutput:
    z: Array            # (B, *shape) end state
    int_trace: Array    # (B,)  int_0^T tr(df/dz) dt
    kinetic: Array      # (B,)  int_0^T ||f||^2 dt
    frobenius: Array    # (B,)  int_0^T ||df/dz||_F^2 dt
    nfe: Array          # ()    function evaluations of the forward solve


def _error_norm(y) -> Array:
    """RMS over (z, int_trace) only: the regularizer states do not steer the step size."""
    return optimistix.rms_norm((y[0], y[1]))


def _solve(term_fn, y0, args, t0: float, t1: float, solver: SolverConfig, control_all: bool):
    """Solves ``dy/du = term_fn(u, y, args)``; everything differentiable travels in ``args``
    (BacksolveAdjoint can only differentiate with respect to ``y0`` and ``args``)."""
    adjoint = (diffrax.RecursiveCheckpointAdjoint(solver.checkpoints or None)
               if solver.adjoint == "recursive"
               else diffrax.BacksolveAdjoint(solver=SOLVERS[solver.solver]()))
    # BacksolveAdjoint solves an augmented backward ODE; its error norm must see all of it.
    norm = optimistix.rms_norm if (control_all or solver.adjoint == "backsolve") else _error_norm
    controller = diffrax.PIDController(rtol=solver.rtol, atol=solver.atol, norm=norm)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(term_fn), SOLVERS[solver.solver](), t0=t0, t1=t1, dt0=None, y0=y0, args=args,
        stepsize_controller=controller, adjoint=adjoint, max_steps=solver.max_steps, throw=False,
    )
    failed = sol.result != diffrax.RESULTS.successful
    y1 = jax.tree.map(lambda v: jnp.where(failed, jnp.nan, v[-1]), sol.ys)
    nfe = sol.stats["num_steps"] * _EVALS_PER_STEP[solver.solver] + 2
    return y1, nfe


def block_forward(f: Dynamics, params: Any, end_time: Array, x: Array, *, trace: str = "exact",
                  eps: Array | None = None, solver: SolverConfig = SolverConfig(),
                  regularize: bool = False) -> BlockOutput:
    """Integrates a batch ``x`` (B, *shape) from t=0 to t=T; see the module docstring.

    ``f(params, t, z)`` is the per-sample dynamics; ``trace`` is ``exact``, ``gaussian`` or
    ``rademacher`` (then ``eps`` is the probe, shaped like ``x``, fixed for the whole solve).
    """
    batch = x.shape[0]

    def term(u, y, args):
        p, t_end, probe = args
        field = lambda zz: t_end * f(p, u * t_end, zz)  # noqa: E731
        if trace == "exact":
            dz, div, frob = jax.vmap(lambda zi: divergence_and_frobenius(field, zi))(y[0])
        else:
            dz, div, frob = jax.vmap(
                lambda zi, ei: divergence_and_frobenius(field, zi, method=trace, eps=ei))(y[0], probe)
        if not regularize:
            return dz, div, jnp.zeros_like(div), jnp.zeros_like(div)
        # dz = T f, div = T tr(J), frob = T^2 ||J||_F^2; the integrands in t = uT are ||f||^2
        # and ||J||_F^2 with dt = T du.
        sq = jnp.sum((dz**2).reshape(batch, -1), axis=1)
        return dz, div, sq / t_end, frob / t_end

    if trace != "exact" and eps is None:
        raise ValueError(f"trace={trace!r} needs a probe eps shaped like x")
    zeros = jnp.zeros((batch,), x.dtype)
    (z, int_tr, kin, frob), nfe = _solve(term, (x, zeros, zeros, zeros), (params, end_time, eps),
                                         0.0, 1.0, solver, control_all=not regularize)
    return BlockOutput(z, int_tr, kin, frob, nfe)


def block_inverse(f: Dynamics, params: Any, end_time: Array, z: Array, *,
                  solver: SolverConfig = SolverConfig()) -> tuple[Array, Array]:
    """Integrates ``z`` (B, *shape) backwards from t=T to t=0: the sampling direction."""

    def term(u, y, args):
        p, t_end = args
        return (jax.vmap(lambda zi: t_end * f(p, u * t_end, zi))(y[0]),)

    (x,), nfe = _solve(term, (z,), (params, end_time), 1.0, 0.0, solver, control_all=True)
    return x, nfe


def standard_normal_logpdf(z: Array) -> Array:
    """log N(z; 0, I) summed over all but the leading axis."""
    flat = z.reshape(z.shape[0], -1)
    return -0.5 * jnp.sum(flat**2, axis=1) - 0.5 * flat.shape[1] * jnp.log(2 * jnp.pi)
