"""SASRec: next-item prediction with a causal self-attention encoder, full softmax.

  python -m genrec_jax.main --config=configs/sasrec_ins.py:cpu --workdir=runs/sasrec
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections

from genrec_jax import losses
from genrec_jax.decode.item_topk import topk_items
from genrec_jax.methods import BuildInputs
from genrec_jax.methods import Method
from genrec_jax.methods import MethodSpec
from genrec_jax.models.sasrec import SASRec as SASRecModel

SPEC = MethodSpec(family='sequential')


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({'model': dict(hidden=64, num_layers=2, num_heads=1,
                                                  dropout=0.2)})


class SASRec(Method):
  trainable = True

  def __init__(self, config, num_items: int):
    m = config.model
    self.model = SASRecModel(num_items=num_items, max_len=config.data.max_history,
                             hidden=m.hidden, num_layers=m.num_layers,
                             num_heads=m.num_heads, dropout=m.dropout)
    self._max_len = config.data.max_history

  def init(self, rng):
    return self.model.init(rng, jnp.full((1, self._max_len), -1, jnp.int32))['params']

  def loss_fn(self, params, batch, rng):
    scores = self.model.apply({'params': params}, batch['history'], train=True,
                              rngs={'dropout': rng})
    return losses.softmax_cross_entropy(scores, batch['target']), {}

  def scores(self, params, batch):
    return self.model.apply({'params': params}, batch['history'])

  @functools.partial(jax.jit, static_argnums=(0, 3))
  def predict_topk(self, params, batch, k):
    return topk_items(self.scores(params, batch), k, batch.get('exclude'))

  @functools.partial(jax.jit, static_argnums=(0,))
  def score_items(self, params, batch, items):
    return jnp.take_along_axis(self.scores(params, batch), items, axis=1)

  def item_vectors(self, params) -> jax.Array:
    """[I, hidden] learned item vectors (LETTER's collaborative signal)."""
    return params['item_embedding']['embedding'][:self.model.num_items]


def build(config, dataset, inputs: BuildInputs = BuildInputs()):
  del inputs
  return SASRec(config, dataset.num_items)
