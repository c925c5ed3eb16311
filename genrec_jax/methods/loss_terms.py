"""Named loss terms of the generative stage: each a small object whose call is a pure
function of the stage's per-target outputs.

  term(out: TargetOutputs) -> (values, metrics)
      values   per-target contributions, the shape of out.nll ([B] per prefix, [B, W] per
               chunk); the stage sums them over the counted targets
      metrics  {name: per-target values}, logged as their sum / number of targets
  term.name, term.weight                # loss = Σ_terms weight · Σ_targets values / #targets
  term.branch_items: np.ndarray | None  # optional [I, K]: items teacher-forced after each
                                        # target's history (-1 none); the stage fills
                                        # out.branch_* for the one term that sets it
  term.branch_active(items) -> bool     # which targets get their branches

A new term (contrastive, symmetric KL, calibration) is one more class here or in its method's
module, passed to GenerativeRecommender(terms=...).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from genrec_jax.losses import unlikelihood


@dataclasses.dataclass
class TargetOutputs:
  """What the stage computed for one batch's targets ([B] per prefix, [B, W] per chunk)."""
  items: jax.Array  # target item of each slot (>= 0 where counted)
  counted: jax.Array  # bool: the slot is a training target
  nll: jax.Array  # −log P(target SID | history), summed over its tokens
  # With a branching term: rows of branches ([B] per prefix, [B, S] target slots per chunk).
  branch_targets: Any = None  # the target item of each row
  branch_active: Any = None  # bool: the row's target gets its branches
  branch_tokens: Any = None  # [..., K, L] the branch items' SID tokens (-1: none)
  branch_log_probs: Any = None  # [..., K, L] log P of each branch token, teacher-forced
  to_targets: Callable[[jax.Array], jax.Array] | None = None  # rows -> the shape of nll


class NLL:
  """Σ_i −log P(c_v^(i) | h, c_v^(<i)) of the target SID, times an optional per-target
  weight (IFairLRS-RW's group weights); the logged 'nll' is always unweighted."""

  name = 'nll'
  branch_items = None

  def __init__(self, weight: float = 1.0, weight_of: Callable | None = None):
    self.weight = weight
    self.weight_of = weight_of  # target items -> weights, or None

  def __call__(self, out: TargetOutputs):
    weights = (jnp.ones_like(out.nll) if self.weight_of is None
               else self.weight_of(jnp.maximum(out.items, 0)))
    return weights * out.nll, {'nll': out.nll}


def auo_token_mask(item_tokens: np.ndarray, distractors: np.ndarray) -> np.ndarray:
  """[I, Kb, L] bool: the tokens of each item's distractors that AUO penalises.

  item_tokens [I, L] (-1 padded), distractors [I, Kb] item indices (-1: none). Token i of
  distractor d of target v is masked out when d[:i+1] == v[:i+1] (it lies in their longest
  common prefix: pushing it down would push down v's own token); from the first differing
  token on, every real token counts. Padding and missing distractors never count.
  """
  target = item_tokens[:, None, :]  # [I, 1, L]
  tokens = np.where((distractors >= 0)[..., None], item_tokens[distractors], -1)  # [I, Kb, L]
  shared = np.cumprod((tokens == target) & (tokens >= 0), axis=-1).astype(bool)
  return (tokens >= 0) & ~shared


class AUO:
  """Ghost's asymmetric unlikelihood: for a tail target v,
  −Σ_{d ∈ distractors(v)} Σ_{i ≥ lcp(d, v)} log(1 − P(c_d^(i) | h, c_d^(<i))).

  item_tokens [I, L] global SID tokens; distractors [I, Kb] (rows of head items unused);
  is_tail [I]."""

  name = 'auo'

  def __init__(self, weight: float, item_tokens: np.ndarray, distractors: np.ndarray,
               is_tail: np.ndarray):
    self.weight = weight
    self.branch_items = np.asarray(distractors)
    self.mask = jnp.asarray(auo_token_mask(item_tokens, self.branch_items))  # [I, Kb, L]
    self.is_tail = jnp.asarray(is_tail)

  def branch_active(self, items):
    return self.is_tail[items]

  def __call__(self, out: TargetOutputs):
    penalised = self.mask[out.branch_targets] & (out.branch_tokens >= 0)
    per_row = jnp.where(out.branch_active,
                        unlikelihood(out.branch_log_probs, penalised).sum((-2, -1)), 0.0)
    auo = out.to_targets(per_row)
    return auo, {'auo': auo}
