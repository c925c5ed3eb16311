"""IFairLRS (Jiang et al., WWW'24) debiasing baselines on the LC-Rec backbone: RW is LC-Rec
with a weighted NLL term, RR is LC-Rec with a re-ranking scorer.

  rw  reweighting: each training example gets the weight w_g of its target's popularity
      group g,
        w_g = (share of group g among the history items of all training examples)
              / (share of group g among their targets).
      Groups (`ifairlrs.num_groups`): 0 (default) = the dataset's `data.num_groups`
      equal-size popularity groups (5: the reading of IFairLRS's item groups that the
      fairness metrics MGU/DGU also use); 2 = the head/tail split (`data.head_ratio`);
      any other G >= 3 = G equal-size popularity groups. With `ifairlrs.normalize_weights`
      (default) the weights are rescaled so their mean over training examples is 1: only the
      loss scale changes, so the learning rate means the same as in the unweighted rows.
  rr  re-ranking: the items of the same beam search as every other generative row
      (`decode.beam_size`, 20 in the table; `ifairlrs.candidates` 0 = that beam) are
      re-scored as
        s'(i) = log P(i | h) − λ · log(1 + c_i)
      (c_i = training interaction count) and the best K kept. λ: with a non-empty
      `ifairlrs.rr_lambda_grid`, the run picks it after training on the validation split
      (the same candidates re-ranked with each λ; best `ifairlrs.rr_select_metric`, ties to
      the smaller λ) and applies it to test; results.json records the choice under
      'ifairlrs_rr'. Validation during training (checkpoint choice) uses
      `ifairlrs.rr_lambda`, which is also the λ when the grid is empty. Re-ranking needs the
      full-ranking protocol: under eval.protocol='sampled' RR scores as LC-Rec.
"""

from __future__ import annotations

import functools
import time

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genrec_jax.data.dataset import popularity_split
from genrec_jax.data.dataset import prefix_histories
from genrec_jax.data.pipeline import eval_batches
from genrec_jax.eval import metrics as metrics_lib
from genrec_jax.methods import BuildInputs
from genrec_jax.methods import MethodSpec
from genrec_jax.methods import lcrec
from genrec_jax.methods.loss_terms import NLL

SPEC = MethodSpec(family='generative', needs=('sids',))
RR_LAMBDA_GRID = (0.0, 0.1, 0.25, 0.5, 1.0)


def default_config() -> ml_collections.ConfigDict:
  config = lcrec.default_config()
  config.update({'ifairlrs': dict(
      mode='rw',
      num_groups=0,  # rw: 0 = data.num_groups popularity groups; 2 = head/tail
      normalize_weights=True,  # rw: mean weight over training examples 1
      rr_lambda=0.5,  # rr: λ of validation during training, and when the grid is empty
      rr_lambda_grid=RR_LAMBDA_GRID,  # rr: λ chosen on valid after training; () = rr_lambda
      rr_select_metric='ndcg@10',
      candidates=0,  # rr: items re-ranked; 0 = decode.beam_size (no wider beam)
  )})
  return config


def validate_config(config) -> None:
  lcrec.validate_config(config)
  f = config.ifairlrs
  if f.mode not in ('rw', 'rr'):
    raise ValueError("Invalid config.ifairlrs.mode: use 'rw' or 'rr'.")
  if not (f.num_groups == 0 or f.num_groups >= 2):
    raise ValueError('Invalid config.ifairlrs.num_groups: use 0 (data.num_groups popularity '
                     'groups), 2 (head/tail) or G >= 3 popularity groups.')
  if not 0 <= f.candidates <= config.decode.beam_size:
    raise ValueError('Invalid config.ifairlrs.candidates: use 0 (= decode.beam_size) or at '
                     'most decode.beam_size (a wider beam than the other rows is not a '
                     're-ranking of the same candidates).')
  if f.rr_lambda < 0 or any(lam < 0 for lam in f.rr_lambda_grid):
    raise ValueError('Invalid config.ifairlrs.rr_lambda(_grid): λ must be >= 0.')
  metric, _, k = f.rr_select_metric.partition('@')
  if metric not in ('hr', 'ndcg') or not k.isdigit() or int(k) not in tuple(config.eval.ks):
    raise ValueError('Invalid config.ifairlrs.rr_select_metric: use hr@K or ndcg@K with K in '
                     'eval.ks, e.g. ndcg@10.')


def item_groups(dataset, num_groups: int = 0) -> np.ndarray:
  """[I] int32 group of each item for RW (see the module docstring for num_groups)."""
  if num_groups == 2:
    return (~dataset.is_head).astype(np.int32)  # 0 = head, 1 = tail
  if num_groups in (0, dataset.num_groups):
    return dataset.item_group
  return popularity_split(dataset.item_counts, 0.5, num_groups)[1]


def group_weights(dataset, num_groups: int = 0, normalize: bool = True) -> np.ndarray:
  """[G] weight of a target in each group of item_groups(dataset, num_groups)."""
  groups = item_groups(dataset, num_groups)
  g = int(groups.max()) + 1
  users, positions = dataset.train_examples()
  history, _, targets = prefix_histories(dataset, positions, users)
  hist_groups = groups[history[history >= 0]]
  hist_share = np.bincount(hist_groups, minlength=g) / len(hist_groups)
  target_groups = groups[targets]
  target_share = np.bincount(target_groups, minlength=g) / len(targets)
  weights = hist_share / np.maximum(target_share, 1e-12)
  return weights / np.mean(weights[target_groups]) if normalize else weights


@functools.partial(jax.jit, static_argnums=(4,))
def rerank(items, scores, log_counts, rr_lambda, k):
  """Top k of items [B, C] (−1 = empty) by scores − rr_lambda · log_counts[item]."""
  rescored = jnp.where(items >= 0, scores - rr_lambda * log_counts[jnp.maximum(items, 0)],
                       -1e30)
  best_scores, best = jax.lax.top_k(rescored, k)
  return jnp.take_along_axis(items, best, axis=1), best_scores


class RerankedBeam:
  """The scorer of IFairLRS-RR: the beam's candidates re-scored with a popularity penalty."""

  def __init__(self, item_counts: np.ndarray, rr_lambda: float, candidates: int,
               lambda_grid=(), select_metric: str = 'ndcg@10'):
    self.log_counts = jnp.log1p(jnp.asarray(item_counts, jnp.float32))
    self.rr_lambda = float(rr_lambda)  # a traced argument of `rerank`: safe to change
    self.candidates = candidates
    self.lambda_grid = tuple(lambda_grid)
    self.select_metric = select_metric

  def candidates_of(self, method, params, batch, k):
    return method.beam_topk(params, batch, max(k, self.candidates))

  def topk(self, method, params, batch, k):
    items, scores = self.candidates_of(method, params, batch, k)
    return rerank(items, scores, self.log_counts, jnp.float32(self.rr_lambda), k)

  def tune_on_validation(self, method, params, dataset, eval_config):
    """λ chosen on valid (the same beam re-ranked per λ) and kept for test; needs the full
    ranking protocol and a non-empty grid (else rr_lambda stays)."""
    if not self.lambda_grid or eval_config.protocol != 'full':
      return None, {}
    selection = self.select_rr_lambda(method, params, dataset, eval_config)
    logging.info('IFairLRS-RR: rr_lambda=%s chosen on valid (%s by lambda: %s)',
                 selection['rr_lambda'], selection['metric'], selection['valid_by_lambda'])
    return (selection['valid_metrics'],
            {'ifairlrs_rr': {k: v for k, v in selection.items() if k != 'valid_metrics'}})

  def select_rr_lambda(self, method, params, dataset, eval_config) -> dict:
    """Picks λ from the grid on the validation split (one decode, re-ranked per λ), sets
    it, and returns {'rr_lambda', 'metric', 'valid_by_lambda', 'valid_metrics'}."""
    start = time.time()
    metric = self.select_metric
    lambdas = sorted(float(x) for x in self.lambda_grid)
    by_lambda = self.metrics_by_lambda(method, params, dataset, 'valid', eval_config, lambdas)
    best = max(lambdas, key=lambda lam: (by_lambda[lam][metric], -lam))  # ties: smaller λ
    self.rr_lambda = best
    valid = dict(by_lambda[best], eval_seconds=time.time() - start)
    return {'rr_lambda': best, 'metric': metric,
            'valid_by_lambda': {str(lam): float(m[metric]) for lam, m in by_lambda.items()},
            'valid_metrics': valid}

  def metrics_by_lambda(self, method, params, dataset, split: str, eval_config,
                        lambdas) -> dict[float, dict]:
    """{λ: every metric of `split`} with the beam's candidates decoded once and re-ranked per
    λ (the RR trade-off curve of a trained run, without retraining)."""
    ks = tuple(int(k) for k in eval_config.ks)
    items, scores = [], []
    for batch, n in eval_batches(dataset, split, eval_config.batch_size,
                                 eval_config.mask_history):
      i, s = self.candidates_of(method, params, batch, max(ks))
      items.append(np.asarray(i)[:n])
      scores.append(np.asarray(s)[:n])
    items, scores = jnp.asarray(np.concatenate(items)), jnp.asarray(np.concatenate(scores))
    targets = dataset.split_targets(split)[0]
    out = {}
    for lam in lambdas:
      topk = np.asarray(rerank(items, scores, self.log_counts, jnp.float32(lam), max(ks))[0])
      out[float(lam)] = metrics_lib.compute_all(topk, targets, dataset.item_counts,
                                                dataset.is_head, dataset.item_group, ks)
    return out


def build(config, dataset, inputs: BuildInputs = BuildInputs()):
  f = config.ifairlrs
  if f.mode == 'rw':
    weights = jnp.asarray(group_weights(dataset, f.num_groups, f.normalize_weights),
                          jnp.float32)
    groups = jnp.asarray(item_groups(dataset, f.num_groups))
    weight_of = lambda targets: weights[groups[targets]]
    return lcrec.build(config, dataset, inputs, terms=[NLL(weight_of=weight_of)])
  scorer = RerankedBeam(dataset.item_counts, f.rr_lambda, f.candidates or config.decode.beam_size,
                        f.rr_lambda_grid, f.rr_select_metric)
  return lcrec.build(config, dataset, inputs, scorer=scorer)
