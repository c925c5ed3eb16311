"""How far an estimate of a user's item distribution is from the exact one (per user rows).

All functions take log-probabilities (or scores) [B, I] over the whole catalogue, numpy,
float64 inside. `exact` is the exact distribution (experiments/simgr_diagnostics.py
enumerates it); an estimate comes from a decoder:

  recall@K           |exact top-K ∩ found| / K, found = the items a decoder returned
  missed mass        1 − Σ_{v ∈ found} p(v): the exact mass of the items a beam never
                     returned (it may have visited their prefixes, but never scored them)
  beam estimate      what a beam search tells about the catalogue: its found items keep their
                     (exact) probabilities, and the mass it missed is spread evenly over the
                     items it never returned. Beam search does not even know that mass; the
                     uniform spread is the most generous estimate that knows nothing about
                     where it went (the minimax choice under KL), so the KL reported is a
                     lower bound for any estimate built from the beam alone. With the missed
                     items at probability 0, KL(exact ‖ beam) would be infinite.
  KL(p ‖ q)          Σ_v p(v) (log p(v) − log q(v)), both normalised over the catalogue
  Spearman           rank correlation over the catalogue (ties share their mean rank)
Head/tail splits pass a boolean item mask: the distributions are restricted to the group and
normalised within it (recall counts the group's items of the exact top-K).
"""

from __future__ import annotations

import numpy as np
import scipy.special
import scipy.stats


def normalise(log_p: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
  """Row-wise log-softmax, over the items in mask only (others -inf)."""
  log_p = np.asarray(log_p, np.float64)
  if mask is not None:
    log_p = np.where(mask[None, :], log_p, -np.inf)
  return log_p - scipy.special.logsumexp(log_p, axis=1, keepdims=True)


def exact_topk(exact: np.ndarray, k: int) -> np.ndarray:
  """[B, k] items of highest exact probability (ties: lower item id first)."""
  return np.argsort(-np.asarray(exact, np.float64), axis=1, kind='stable')[:, :k]


def found_mask(found: np.ndarray, num_items: int) -> np.ndarray:
  """[B, I] bool: the items of found [B, W] (-1 = empty slot)."""
  mask = np.zeros((found.shape[0], num_items + 1), bool)
  np.put_along_axis(mask, np.where(found >= 0, found, num_items), True, axis=1)
  return mask[:, :num_items]


def topk_recall(exact: np.ndarray, found: np.ndarray, k: int,
                group: np.ndarray | None = None) -> np.ndarray:
  """[B] share of the exact top-k (its items in `group`, if given) that found [B, W] holds;
  NaN for rows with no exact top-k item in the group."""
  top = exact_topk(exact, k)
  hit = np.take_along_axis(found_mask(found, exact.shape[1]), top, axis=1)
  if group is None:
    return hit.mean(axis=1)
  in_group = group[top]
  with np.errstate(invalid='ignore'):
    return (hit & in_group).sum(1) / np.where(in_group.any(1), in_group.sum(1), np.nan)


def missed_mass(exact: np.ndarray, found: np.ndarray,
                group: np.ndarray | None = None) -> np.ndarray:
  """[B] exact mass (of `group`, as a share of the group's mass) the found items miss."""
  p = np.exp(normalise(exact, group))
  return 1.0 - np.where(found_mask(found, exact.shape[1]), p, 0.0).sum(1)


def beam_estimate(exact: np.ndarray, found: np.ndarray) -> np.ndarray:
  """[B, I] log q: the found items' exact probabilities, the missed mass spread evenly."""
  log_p = normalise(exact)
  hit = found_mask(found, exact.shape[1])
  missed = np.clip(1.0 - np.where(hit, np.exp(log_p), 0.0).sum(1, keepdims=True), 1e-300,
                   None)
  num_missed = np.maximum((~hit).sum(1, keepdims=True), 1)
  return np.where(hit, log_p, np.log(missed) - np.log(num_missed))


def kl(exact: np.ndarray, estimate: np.ndarray,
       group: np.ndarray | None = None) -> np.ndarray:
  """[B] KL(exact ‖ estimate), both normalised over the catalogue (or the group)."""
  log_p, log_q = normalise(exact, group), normalise(estimate, group)
  keep = np.isfinite(log_p)
  terms = np.where(keep, np.exp(np.where(keep, log_p, 0.0)) * (
      np.where(keep, log_p, 0.0) - np.where(keep, log_q, 0.0)), 0.0)
  return terms.sum(1)


def spearman(exact: np.ndarray, estimate: np.ndarray,
             group: np.ndarray | None = None) -> np.ndarray:
  """[B] Spearman rank correlation over the catalogue (or the group's items)."""
  if group is not None:
    exact, estimate = exact[:, group], estimate[:, group]
  ranks_p = scipy.stats.rankdata(exact, axis=1)
  ranks_q = scipy.stats.rankdata(estimate, axis=1)
  ranks_p -= ranks_p.mean(1, keepdims=True)
  ranks_q -= ranks_q.mean(1, keepdims=True)
  denom = np.sqrt((ranks_p**2).sum(1) * (ranks_q**2).sum(1))
  with np.errstate(invalid='ignore', divide='ignore'):
    return (ranks_p * ranks_q).sum(1) / denom


def group_mass(log_p: np.ndarray, group: np.ndarray) -> np.ndarray:
  """[B] the share of the distribution's mass on the items of `group`."""
  return np.exp(normalise(log_p)[:, group]).sum(1) if group.any() else np.zeros(len(log_p))
