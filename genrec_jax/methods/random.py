"""Random: a uniformly random ranking of the catalogue for each user.

Deterministic: the scores of user u are uniform draws from fold_in(PRNGKey(seed), u), so a
user gets the same ranking in every batch layout and every run with the same seed.
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


class Random(Method):
  trainable = False

  def __init__(self, num_items: int, seed: int):
    self._num_items = num_items
    self._seed = seed

  def init(self, rng):
    del rng
    return {'key': jax.random.PRNGKey(self._seed)}

  def _user_scores(self, params, users):
    draw = lambda u: jax.random.uniform(jax.random.fold_in(params['key'], u),
                                        (self._num_items,))
    return jax.vmap(draw)(users)

  @functools.partial(jax.jit, static_argnums=(0, 3))
  def predict_topk(self, params, batch, k):
    return topk_items(self._user_scores(params, batch['user']), k, batch.get('exclude'))

  @functools.partial(jax.jit, static_argnums=(0,))
  def score_items(self, params, batch, items):
    scores = self._user_scores(params, batch['user'])
    return jnp.take_along_axis(scores, items, axis=1)


def build(config, dataset, inputs: BuildInputs = BuildInputs()):
  del inputs
  return Random(dataset.num_items, config.seed)
