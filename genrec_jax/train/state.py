"""Train state, the optimizer, and creating both already sharded.

The optimizer is optax AdamW with linear warmup + cosine decay, global-norm clipping and
optional gradient accumulation (optax.MultiSteps). A method may restrict it to part of its
params (its optional `restrict_optimizer(tx) -> tx`, e.g. only the new SID rows of an LLM).

Sharded creation, the way large JAX codebases do it: evaluate the init abstractly
(jax.eval_shape) to get shapes and logical axis names, turn those into NamedShardings, then
run the real init under jit with those output shardings, so no full copy of the params ever
lives on one device.
"""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from genrec_jax.train import sharding as sharding_lib


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any


def default_train_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      batch_size=256,  # global, over all processes
      num_epochs=10,
      num_steps=0,  # > 0 overrides num_epochs
      lr=1e-3,
      warmup_steps=100,
      end_lr_ratio=0.0,  # cosine decays to lr * end_lr_ratio
      weight_decay=0.01,
      b1=0.9,
      b2=0.999,
      grad_clip=1.0,  # global norm; 0 disables
      grad_accum_steps=1,
      log_every=50,
      eval_every=0,  # steps between validations; 0 = once per epoch
      early_stop_metric='ndcg@10',
      early_stop_patience=0,  # validations without improvement before stopping; 0 = never
      checkpoint_every=0,  # steps; 0 = at every validation
      keep_checkpoints=2,
      init_from='',  # workdir of another run: initialise params (only) from its best/last
      example_kind='prefix',  # 'prefix' examples or whole 'sequence's (method decides)
      # 'sequence' examples: targets per chunk; a chunk holds max_history + this many items,
      # so lower it for datasets of short sequences (less padding per row).
      targets_per_chunk=32,
  ))


def make_optimizer(train_config, num_steps: int, restrict=None):
  schedule = optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=train_config.lr,
      warmup_steps=min(train_config.warmup_steps, max(num_steps - 1, 1)),
      decay_steps=max(num_steps, 2), end_value=train_config.lr * train_config.end_lr_ratio)
  parts = []
  if train_config.grad_clip > 0:
    parts.append(optax.clip_by_global_norm(train_config.grad_clip))
  parts.append(optax.adamw(schedule, b1=train_config.b1, b2=train_config.b2,
                           weight_decay=train_config.weight_decay))
  tx = optax.chain(*parts)
  if restrict is not None:
    tx = restrict(tx)
  if train_config.grad_accum_steps > 1:
    tx = optax.MultiSteps(tx, every_k_schedule=train_config.grad_accum_steps)
  return tx, schedule


def create_sharded_state(init_fn, tx, mesh, logical_rules, rng):
  """(state, state shardings) with params and optimizer state created on their shards.

  init_fn(rng) returns params whose leaves may be flax LogicallyPartitioned boxes; the state
  holds them unboxed. Optimizer-state leaves take the sharding of the param they mirror
  (same path suffix and shape, e.g. Adam's mu/nu); the rest (step counts) are replicated.
  """
  abstract_params = jax.eval_shape(init_fn, rng)
  param_shardings = sharding_lib.logical_shardings(abstract_params, mesh, logical_rules)
  abstract_params = nn.unbox(abstract_params)
  abstract_opt = jax.eval_shape(tx.init, abstract_params)
  shardings = TrainState(
      step=NamedSharding(mesh, P()), params=param_shardings,
      opt_state=_mirror_param_shardings(abstract_opt, abstract_params, param_shardings, mesh))

  def init_state(rng):
    params = nn.unbox(init_fn(rng))
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))

  return jax.jit(init_state, out_shardings=shardings)(rng), shardings


def _mirror_param_shardings(abstract_opt, abstract_params, param_shardings, mesh):
  by_path = {}
  for (path, leaf), sharding in zip(jax.tree_util.tree_flatten_with_path(abstract_params)[0],
                                    jax.tree.leaves(param_shardings)):
    by_path[tuple(str(k) for k in path)] = (leaf.shape, sharding)

  def pick(path, leaf):
    path = tuple(str(k) for k in path)
    for start in range(len(path)):
      shape, sharding = by_path.get(path[start:], (None, None))
      if sharding is not None and shape == leaf.shape:
        return sharding
    return NamedSharding(mesh, P())

  return jax.tree_util.tree_map_with_path(pick, abstract_opt)
