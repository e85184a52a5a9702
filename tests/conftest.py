"""Strict JAX numerics for every test: no silent dtype or rank promotion."""

import jax

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")

# The default partitionable threefry makes each program that draws random numbers compile
# several times slower on the CPU here (measured 2.5-13 s against 0.7-1.5 s); the tests only
# need some valid stream, so they use the classic one.
jax.config.update("jax_threefry_partitionable", False)
