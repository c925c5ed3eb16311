"""IFairLRS (Jiang et al., WWW'24) debiasing baselines on the LC-Rec backbone.

  rw  reweighting: example weight w_g(target), with
        w_g = (share of group g among the history items of all training examples)
              / (share of group g among their targets),
      over the head/tail groups, rescaled so the mean weight over training examples is 1;
  rr  re-ranking: the top `ifairlrs.candidates` items of the beam search are re-scored as
        s'(i) = log P(i | h) − λ · log(1 + c_i)
      (c_i = training interaction count, λ = ifairlrs.rr_lambda) and the best K kept.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genrec_jax.data.dataset import prefix_histories
from genrec_jax.methods import lcrec

uses_sids = True


def default_config() -> ml_collections.ConfigDict:
  config = lcrec.default_config()
  config.update({'ifairlrs': dict(mode='rw', rr_lambda=0.5, candidates=50)})
  return config


def validate_config(config) -> None:
  lcrec.validate_config(config)
  if config.ifairlrs.mode not in ('rw', 'rr'):
    raise ValueError("Invalid config.ifairlrs.mode: use 'rw' or 'rr'.")


def group_weights(dataset) -> np.ndarray:
  """[2] weights of (tail, head) targets; see the module docstring."""
  users, positions = dataset.train_examples()
  history, _, targets = prefix_histories(dataset, positions, users)
  hist_items = history[history >= 0]
  hist_share = np.bincount(dataset.is_head[hist_items].astype(int), minlength=2) / len(
      hist_items)
  target_groups = dataset.is_head[targets].astype(int)
  target_share = np.bincount(target_groups, minlength=2) / len(targets)
  weights = hist_share / np.maximum(target_share, 1e-12)
  return weights / np.mean(weights[target_groups])


class Reranked:
  """Wraps a generative method: beam candidates re-scored with a popularity penalty."""

  def __init__(self, method, item_counts: np.ndarray, rr_lambda: float, candidates: int):
    self.method = method
    self.penalty = rr_lambda * jnp.log1p(jnp.asarray(item_counts, jnp.float32))
    self.candidates = candidates

  def __getattr__(self, name):  # training, init, score_items: the wrapped method's
    return getattr(self.method, name)

  @functools.partial(jax.jit, static_argnums=(0, 3))
  def predict_topk(self, params, batch, k):
    items, scores = self.method.predict_topk(params, batch, max(k, self.candidates))
    rescored = jnp.where(items >= 0, scores - self.penalty[jnp.maximum(items, 0)], -1e30)
    best_scores, best = jax.lax.top_k(rescored, k)
    return jnp.take_along_axis(items, best, axis=1), best_scores


def build(config, dataset, sids, embeddings=None):
  f = config.ifairlrs
  if f.mode == 'rw':
    weights = jnp.asarray(group_weights(dataset), jnp.float32)
    is_head = jnp.asarray(dataset.is_head)
    weight_of = lambda targets: weights[is_head[targets].astype(jnp.int32)]
    return lcrec.build(config, dataset, sids, embeddings, example_weight=weight_of)
  method = lcrec.build(config, dataset, sids, embeddings)
  return Reranked(method, dataset.item_counts, f.rr_lambda, f.candidates)
