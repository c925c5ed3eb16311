"""Ghost (popularity bias in generative recommendation): SKT + AUO on a SID backbone
(ghost.backbone: 'lcrec', the paper's, or 'tiger').

  SKT  skeleton-founded tokenization (tokenize.method='skt', see tokenize/skt.py).
  AUO  asymmetric unlikelihood, for training examples whose target v is a tail item:
         V_rough = top K_a head items by cosine similarity of item embeddings to v;
         distractors(v) = the K_b of V_rough with the shortest longest-common-prefix with v's
           SID (ties: higher similarity first), precomputed once;
         L_AUO = −Σ_{d ∈ distractors(v)} Σ_i log(1 − P(c_d^(i) | h, c_d^(<i))), over d's
           tokens from its first token that differs from v's on (a shared prefix is v's
           own; see loss_terms.auo_token_mask);
         L = L_NLL + α·L_AUO, α = ghost.alpha (0.1).
Ghost is the backbone's method with one more loss term, `loss_terms.AUO`, whose branches are
the distractors; the shared generative stage (methods/generative.py) teacher-forces each from
its target's own history, per prefix or in whole-sequence chunks (decoder backbone only).

Ablations are config switches: ghost.auo=False (w/o AUO), tokenize.method='rq_kmeans'
(w/o SKT; RQK-4/RQK-6 with tokenize.levels and ghost.auo=False), tokenize.method='rqk_var'
with head_levels=4, tail_levels=6 (RQK-4-6). Beyond the paper: AUO against other distractors,
given as a file (ghost.distractors_npy) or mined from a trained run (ghost.distractors_run: the
head items its beam ranks above each tail item where that item is the training target, see
ranked_above); run.py reads or mines them into BuildInputs.distractors.
"""

from __future__ import annotations

import os

import ml_collections
import numpy as np

from genrec_jax.methods import BuildInputs
from genrec_jax.methods import MethodSpec
from genrec_jax.methods import lcrec
from genrec_jax.methods import tiger
from genrec_jax.methods.loss_terms import AUO
from genrec_jax.methods.loss_terms import NLL

SPEC = MethodSpec(family='generative', needs=('sids', 'embeddings'))
BACKBONES = {'lcrec': lcrec, 'tiger': tiger}


def default_config(backbone: str = 'lcrec') -> ml_collections.ConfigDict:
  """Ghost's fields on the given backbone (config files pass ghost.backbone here)."""
  if backbone not in BACKBONES:
    raise ValueError(f'Invalid config.ghost.backbone {backbone!r}: use one of '
                     f'{sorted(BACKBONES)}.')
  config = BACKBONES[backbone].default_config()
  config.update({
      # Distractors other than the paper's rule (both '': the rule): distractors_npy, a
      # [I, K_b] .npy of head items per tail item (-1: filled by the rule); distractors_run,
      # the workdir of a finished generative run on the same data to mine them from
      # (ranked_above; cached in this run's workdir).
      'ghost': dict(backbone=backbone, auo=True, alpha=0.1, k_a=200, k_b=5,
                    distractors_npy='', distractors_run=''),
      'tokenize': dict(method='skt', head_levels=3, tail_levels=2),
  })
  return config


def default_config_for(config) -> ml_collections.ConfigDict:
  return default_config(config.ghost.backbone)


def validate_config(config) -> None:
  BACKBONES[config.ghost.backbone].validate_config(config)
  if config.ghost.k_b > config.ghost.k_a:
    raise ValueError('Invalid config.ghost.k_b: must be <= ghost.k_a.')
  if config.ghost.distractors_npy and not os.path.exists(config.ghost.distractors_npy):
    raise ValueError(f'Invalid config.ghost.distractors_npy: {config.ghost.distractors_npy} '
                     'does not exist; make it with experiments/mine_distractors.py.')
  if config.ghost.distractors_npy and config.ghost.distractors_run:
    raise ValueError('Invalid config.ghost.distractors_run: set it or ghost.distractors_npy, '
                     'not both.')


def undesired_collection(embeddings: np.ndarray, item_tokens: np.ndarray,
                         is_head: np.ndarray, k_a: int, k_b: int,
                         chunk: int = 1024) -> np.ndarray:
  """[I, k_b] head distractors of every tail item (rows of head items are -1).

  item_tokens: [I, L] SID tokens padded with -1 (the longest common prefix counts equal
  tokens from the start; padding never matches).
  """
  x = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
  heads = np.flatnonzero(is_head)
  k_a, k_b = min(k_a, len(heads)), min(k_b, len(heads))
  out = np.full((len(x), k_b), -1, np.int64)
  tails = np.flatnonzero(~is_head)
  for start in range(0, len(tails), chunk):
    rows = tails[start:start + chunk]
    sims = x[rows] @ x[heads].T  # [R, H]
    rough = np.argsort(-sims, axis=1, kind='stable')[:, :k_a]  # [R, k_a] into heads
    rough_sims = np.take_along_axis(sims, rough, axis=1)
    candidate_tokens = item_tokens[heads[rough]]  # [R, k_a, L]
    same = (candidate_tokens == item_tokens[rows][:, None, :]) & (candidate_tokens >= 0)
    lcp = np.cumprod(same, axis=2).sum(2)  # [R, k_a]
    order = np.lexsort((-rough_sims, lcp), axis=1)[:, :k_b]  # lcp asc, then similarity desc
    out[rows] = heads[np.take_along_axis(rough, order, axis=1)]
  return out


def ranked_above(top: np.ndarray, targets: np.ndarray, is_head: np.ndarray,
                 k_b: int) -> np.ndarray:
  """[I, k_b] mined distractors: for every tail item, the head items of `top` [N, K] (a
  trained run's ranking of N training examples) ranked above it in the examples whose target
  it is (all K where it is missing), most frequent first (ties: lower index); -1 where there
  are fewer. Rows of head items are -1."""
  num_items = len(is_head)
  above = np.cumsum(top == targets[:, None], axis=1) == 0  # the slots before the target's
  counted = above & (top >= 0) & is_head[np.maximum(top, 0)] & ~is_head[targets][:, None]
  pairs = np.broadcast_to(targets[:, None], top.shape)[counted] * num_items + top[counted]
  codes, counts = np.unique(pairs, return_counts=True)
  tail, item = codes // num_items, codes % num_items
  order = np.lexsort((item, -counts, tail))  # by tail item, then count desc, then index
  tail, item = tail[order], item[order]
  rank = np.arange(len(tail)) - np.searchsorted(tail, tail, side='left')
  out = np.full((num_items, k_b), -1, np.int64)
  keep = rank < k_b
  out[tail[keep], rank[keep]] = item[keep]
  return out


def given_distractors(given: np.ndarray, fallback: np.ndarray, is_head: np.ndarray,
                      source: str) -> np.ndarray:
  """`given` [I, K_b] distractors (from `source`, named in errors), each tail item's row
  completed (where it has -1) from `fallback`'s row in order, never repeating an item."""
  if (given.shape != fallback.shape or not np.issubdtype(given.dtype, np.integer)
      or given.min() < -1 or given.max() >= len(is_head)):
    raise ValueError(f'{source}: expected integer item indices (or -1) of shape '
                     f'{fallback.shape}, got {given.dtype} {given.shape}; make it with '
                     'experiments/mine_distractors.py on this dataset and ghost.k_b.')
  tails = np.flatnonzero(~is_head)
  if (given[tails] >= 0).any() and not is_head[given[tails][given[tails] >= 0]].all():
    raise ValueError(f'{source}: a distractor is a tail item; AUO pushes down head items '
                     'only.')
  out = fallback.copy()
  for v in tails:
    row = list(dict.fromkeys(int(d) for d in given[v] if d >= 0))
    row += [d for d in fallback[v] if d >= 0 and d not in row]
    out[v] = row[:fallback.shape[1]]
  return out


def build(config, dataset, inputs: BuildInputs = BuildInputs()):
  g = config.ghost
  terms = [NLL()]
  if g.auo:
    if inputs.embeddings is None:
      raise ValueError('ghost: AUO needs the item embeddings (config.embed).')
    item_tokens = inputs.sids.item_tokens()
    distractors = undesired_collection(inputs.embeddings, item_tokens, dataset.is_head,
                                       g.k_a, g.k_b)
    if inputs.distractors is not None:
      source = (f'ghost.distractors_npy={g.distractors_npy}' if g.distractors_npy
                else f'ghost.distractors_run={g.distractors_run}')
      distractors = given_distractors(inputs.distractors, distractors, dataset.is_head, source)
    terms.append(AUO(g.alpha, item_tokens, np.maximum(distractors, 0), ~dataset.is_head))
  return BACKBONES[g.backbone].build(config, dataset, inputs, terms=terms)
