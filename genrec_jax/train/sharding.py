"""Device mesh, logical-axis rules and global batches.

Params carry logical axis names (flax `nn.with_logical_partitioning`); `config.sharding.rules`
maps them to the mesh axes ('data', 'fsdp', 'tensor'). The defaults shard the batch over data
and fsdp, the embedding dimension of weights over fsdp (ZeRO-3 style) and MLP / heads / vocab
over tensor. A mesh axis of size -1 takes the devices left over.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

MESH_AXES = ('data', 'fsdp', 'tensor')

DEFAULT_RULES = (
    ('batch', ('data', 'fsdp')),
    ('length', None),
    ('embed', 'fsdp'),
    ('mlp', 'tensor'),
    ('heads', 'tensor'),
    ('kv_heads', None),  # few kv heads (e.g. 2 in Qwen2.5-0.5B): not worth splitting
    ('kv', None),
    ('vocab', 'tensor'),
    ('layers', None),
)


def default_sharding_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1, rules=DEFAULT_RULES))


def make_mesh(sharding_config, devices=None) -> Mesh:
  devices = np.asarray(jax.devices() if devices is None else devices)
  shape = [sharding_config[a] for a in MESH_AXES]
  if shape.count(-1) > 1:
    raise ValueError('config.sharding: at most one of data/fsdp/tensor may be -1.')
  known = int(np.prod([s for s in shape if s != -1]))
  if devices.size % known:
    raise ValueError(f'config.sharding: {dict(zip(MESH_AXES, shape))} does not divide the '
                     f'{devices.size} devices; make the product of the axes divide it.')
  shape = [devices.size // known if s == -1 else s for s in shape]
  if int(np.prod(shape)) != devices.size:
    raise ValueError(f'config.sharding: mesh {shape} uses {np.prod(shape)} of '
                     f'{devices.size} devices; set one axis to -1.')
  return Mesh(devices.reshape(shape), MESH_AXES)


def rules(sharding_config) -> tuple:
  return tuple((name, tuple(axes) if isinstance(axes, list) else axes)
               for name, axes in sharding_config.rules)


def logical_shardings(abstract_tree, mesh: Mesh, logical_rules):
  """NamedShardings for a pytree whose leaves may be nn.LogicallyPartitioned boxes."""
  specs = nn.get_partition_spec(abstract_tree)
  return nn.logical_to_mesh_sharding(specs, mesh, logical_rules)


def batch_sharding(mesh: Mesh, logical_rules) -> NamedSharding:
  """Leading (batch) axis over the mesh axes the 'batch' rule names."""
  return NamedSharding(mesh, nn.logical_to_mesh_axes(('batch',), logical_rules))


def global_batch(local_batch: dict, sharding: NamedSharding) -> dict:
  """Process-local numpy batch -> global jax arrays (each process holds its rows)."""
  def put(x):
    spec = P(*sharding.spec, *([None] * (np.ndim(x) - len(sharding.spec))))
    return jax.make_array_from_process_local_data(NamedSharding(sharding.mesh, spec), x)
  return jax.tree.map(put, local_batch)
