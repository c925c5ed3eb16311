"""Pop: recommend the items with the most training interactions to every user.

Not trained: `init` returns the training interaction counts. Ties are broken by the lower
item id (jax.lax.top_k keeps the first of equal values).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections

from genrec_jax.decode.item_topk import topk_items
from genrec_jax.methods import BuildInputs
from genrec_jax.methods import Method
from genrec_jax.methods import MethodSpec

SPEC = MethodSpec(family='statistical')


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict()


class Pop(Method):
  trainable = False

  def __init__(self, item_counts):
    self._counts = jnp.asarray(item_counts, jnp.float32)

  def init(self, rng):
    del rng
    return {'item_counts': self._counts}

  def scores(self, params, batch):
    return jnp.broadcast_to(params['item_counts'], (batch['user'].shape[0],
                                                    params['item_counts'].shape[0]))

  @functools.partial(jax.jit, static_argnums=(0, 3))
  def predict_topk(self, params, batch, k):
    return topk_items(self.scores(params, batch), k, batch.get('exclude'))

  @functools.partial(jax.jit, static_argnums=(0,))
  def score_items(self, params, batch, items):
    return params['item_counts'][items]


def build(config, dataset, inputs: BuildInputs = BuildInputs()):
  del config, inputs
  return Pop(dataset.item_counts)
