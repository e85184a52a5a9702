"""One code path for 1..N devices: a mesh over all devices, the batch split on ``data``.

Parameters and other state are replicated; a batch's leading axis is sharded over the ``data``
axis, so ``jit`` turns batch means into all-reduces. On several hosts call
``jax.distributed.initialize()`` first (``jaxebm train --distributed``); each host then feeds
its own slice of the global batch.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def make_mesh() -> Mesh:
    return Mesh(np.asarray(jax.devices()), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P("data"))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    n = mesh.devices.size
    if batch_size % n:
        raise ValueError(
            f"data.batch_size={batch_size} must be divisible by the number of devices ({n})"
        )


def shard_batch(batch: dict, mesh: Mesh) -> dict:
    """Places a host batch (numpy) on the mesh, split along its leading axis.

    Single host: ``device_put`` splits the global batch. Several hosts: each passes its local
    slice and the global array is assembled from the per-process pieces.
    """
    sharding = batch_sharding(mesh)
    if jax.process_count() == 1:
        return jax.device_put(batch, sharding)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch
    )
