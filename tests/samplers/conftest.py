"""Compile-time setting for the sampler tests (numerics are unaffected).

With this jax's default partitionable threefry, XLA on the CPU takes several seconds (up to ~10 s on
the shared 2-core machine) to compile each program that draws random numbers; the classic threefry
lowering compiles in well under a second. The tests are statistical or compare loop modes under one
stream, so they do not depend on which stream jax produces.
"""

import jax
import pytest


@pytest.fixture(autouse=True, scope="module")
def _fast_compiling_threefry():
    with jax.threefry_partitionable(False):
        yield
