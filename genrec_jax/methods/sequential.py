"""The sequential family: history -> user state -> a score per item; exact top-k.

A SequentialRecommender is composed of
  encoder     a flax module with encode(history [B, T] left-padded, train) -> states
              [B, T, D] and item_table() -> [I, D] (SASRec; GRU4Rec and BERT4Rec fit the same
              two calls)
  item vectors  the encoder's table, plus, with frozen item embeddings [I, d_f] (e.g. an
              LLM's), an adapter: + frozen @ W, W [d_f, D] learned (`params['adapter']`)
  loss terms  pure functions of SequentialOutputs, weighted: loss = Σ weight · mean(values)
  scorer      scores = state · item vectors; top k (past items masked if asked)
The user state is the last position's state (the next item after the whole history).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from genrec_jax.decode.item_topk import topk_items
from genrec_jax.losses import target_log_probs
from genrec_jax.methods import Method


@dataclasses.dataclass
class SequentialOutputs:
  scores: jax.Array  # [B, I] against every item
  targets: jax.Array  # [B]
  states: jax.Array  # [B, D] user states


class ItemCrossEntropy:
  """−log softmax(scores)[target] over the full catalogue (SASRec's full-softmax loss)."""

  name = 'nll'

  def __init__(self, weight: float = 1.0):
    self.weight = weight

  def __call__(self, out: SequentialOutputs):
    return -target_log_probs(out.scores, out.targets), {}


class SequentialRecommender(Method):

  def __init__(self, encoder, max_history: int, terms=(ItemCrossEntropy(),),
               frozen_item_embeddings: np.ndarray | None = None):
    self.encoder = encoder
    self.max_history = max_history
    self.terms = tuple(terms)
    self.frozen = (None if frozen_item_embeddings is None
                   else jnp.asarray(frozen_item_embeddings, jnp.float32))

  def init(self, rng):
    params = self.encoder.init(rng, jnp.full((1, self.max_history), -1, jnp.int32))['params']
    if self.frozen is None:
      return params
    dim = self.encoder.apply({'params': params}, method='item_table').shape[-1]
    return {**params, 'adapter': jnp.zeros((self.frozen.shape[1], dim), jnp.float32)}

  def _encoder_params(self, params):
    return {k: v for k, v in params.items() if k != 'adapter'}

  def user_states(self, params, history, rng=None):
    train = rng is not None
    states = self.encoder.apply({'params': self._encoder_params(params)}, history, train,
                                method='encode', rngs={'dropout': rng} if train else {})
    return states[:, -1]

  def item_vectors(self, params):
    """[I, D] item vectors (the encoder's table, plus the adapted frozen embeddings)."""
    table = self.encoder.apply({'params': self._encoder_params(params)}, method='item_table')
    if self.frozen is None:
      return table
    return table + self.frozen @ params['adapter']

  def scores(self, params, batch, rng=None):
    return self.user_states(params, batch['history'], rng) @ self.item_vectors(params).T

  def loss_fn(self, params, batch, rng):
    states = self.user_states(params, batch['history'], rng)
    out = SequentialOutputs(scores=states @ self.item_vectors(params).T,
                            targets=batch['target'], states=states)
    loss, metrics = None, {}
    for term in self.terms:
      values, term_metrics = term(out)
      part = term.weight * jnp.mean(values)
      loss = part if loss is None else loss + part
      metrics.update({name: jnp.mean(value) for name, value in term_metrics.items()})
    return loss, metrics

  @functools.partial(jax.jit, static_argnums=(0, 3))
  def predict_topk(self, params, batch, k):
    return topk_items(self.scores(params, batch), k, batch.get('exclude'))

  @functools.partial(jax.jit, static_argnums=(0,))
  def score_items(self, params, batch, items):
    return jnp.take_along_axis(self.scores(params, batch), items, axis=1)
