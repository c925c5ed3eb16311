"""Runs a method over every user of a split and computes the metrics of `metrics.py`.

Two protocols (config.eval.protocol):
  full     rank the whole catalogue (`predict_topk`); every metric, popularity ones included.
  sampled  rank the target among N negatives drawn uniformly from the items the user never
           interacted with (`score_items`; GenAIR's public protocol); HR/NDCG only.
`eval.mask_history` decides whether the user's past items may be recommended; the choice is
recorded next to the numbers (see `protocol_description`).
"""

from __future__ import annotations

import time

import numpy as np

from genrec_jax import progress
from genrec_jax.config import ConfigError
from genrec_jax.data.dataset import Dataset
from genrec_jax.data.pipeline import eval_batches
from genrec_jax.eval import metrics as metrics_lib

SPLIT_IDS = {'valid': 1, 'test': 2}  # seeds the negatives; never Python's salted hash()


def protocol_description(eval_config) -> str:
  if eval_config.protocol == 'full':
    what = 'full-catalogue ranking'
  else:
    what = (f'target vs {eval_config.num_negatives} negatives sampled uniformly from '
            'items the user never interacted with (ties count against the target)')
  masked = ('past items of the user masked' if eval_config.mask_history
            else 'past items not masked')
  return f'{what}; {masked}; leave-one-out'


def evaluate(method, params, dataset: Dataset, split: str, eval_config,
             seed: int = 0) -> dict[str, float]:
  """Metrics of `method` on `split` ('valid' or 'test')."""
  ks = tuple(int(k) for k in eval_config.ks)
  targets = dataset.split_targets(split)[0]
  start = time.time()
  if eval_config.protocol == 'full':
    topk = _predict_all(method, params, dataset, split, eval_config, max(ks))
    result = metrics_lib.compute_all(topk, targets, dataset.item_counts, dataset.is_head,
                                     dataset.item_group, ks)
  else:
    ranks = _sampled_ranks(method, params, dataset, split, eval_config, seed)
    result = metrics_lib.accuracy_metrics(ranks, ~dataset.is_head[targets], ks)
    result.update(metrics_lib.group_hit_rates(ranks, dataset.item_group[targets],
                                              dataset.num_groups, ks))
    result.update(num_users=float(len(ranks)),
                  num_tail_users=float((~dataset.is_head[targets]).sum()))
  result['eval_seconds'] = time.time() - start
  return result


def _batches(dataset, split, eval_config, mask_history):
  """eval_batches with a progress bar (it disappears when done)."""
  total = -(-len(dataset.split_targets(split)[0]) // eval_config.batch_size)
  return progress.bar(eval_batches(dataset, split, eval_config.batch_size, mask_history),
                      total=total, desc=f'Evaluating {split}', unit='batch', leave=False)


def _predict_all(method, params, dataset, split, eval_config, k) -> np.ndarray:
  rows = []
  for batch, n in _batches(dataset, split, eval_config, eval_config.mask_history):
    items, scores = method.predict_topk(params, batch, k)
    items, scores = np.asarray(items)[:n], np.asarray(scores)[:n]
    if not np.isfinite(scores[items >= 0]).all() or not (items >= 0).any():
      raise FloatingPointError(
          f'{split} scores are not finite (or no item was ranked at all): the params are '
          'broken; check the run\'s loss in metrics.jsonl and lower train.lr.')
    rows.append(items)
  return np.concatenate(rows)


def _sampled_ranks(method, params, dataset, split, eval_config, seed) -> np.ndarray:
  negatives = sample_negatives(dataset, eval_config.num_negatives,
                               np.random.default_rng([seed, SPLIT_IDS[split]]))
  ranks = []
  for batch, n in _batches(dataset, split, eval_config, False):
    candidates = np.concatenate([batch['target'][:, None], negatives[batch['user']]], axis=1)
    scores = np.asarray(method.score_items(params, batch, candidates))[:n]
    ranks.append(metrics_lib.ranks_from_sampled_scores(scores[:, 0], scores[:, 1:]))
  return np.concatenate(ranks)


def check_negatives(dataset: Dataset, num: int) -> None:
  """Raises ConfigError unless every user has `num` items never interacted with to sample."""
  num_free = dataset.num_items - np.array([len(np.unique(dataset.sequence(u)))
                                           for u in range(dataset.num_users)])
  if (num_free < num).any():
    user = int(np.argmin(num_free))
    raise ConfigError(f'eval.num_negatives={num} but user {dataset.user_ids[user]} of '
                      f'{dataset.name} has only {num_free[user]} items left to sample; lower '
                      'eval.num_negatives.')


def sample_negatives(dataset: Dataset, num: int, rng: np.random.Generator,
                     chunk: int = 1024) -> np.ndarray:
  """[U, num] distinct items per user, uniform over items the user never interacted with."""
  check_negatives(dataset, num)
  out = np.empty((dataset.num_users, num), np.int32)
  for start in range(0, dataset.num_users, chunk):
    users = np.arange(start, min(start + chunk, dataset.num_users))
    keys = rng.random((len(users), dataset.num_items))
    for row, u in enumerate(users):  # mark interacted items as never chosen
      keys[row, dataset.sequence(u)] = 2.0
    out[users] = np.argpartition(keys, num - 1, axis=1)[:, :num]
  return out
