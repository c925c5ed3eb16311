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
with head_levels=4, tail_levels=6 (RQK-4-6). Beyond the paper: ghost.distractors_npy gives AUO
other distractors, e.g. the head items a trained run ranks above each tail target.
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
      # distractors_npy: '' (the paper's rule above), or a [I, K_b] array of head items per
      # tail item (-1: filled by the paper's rule), e.g. the items a trained run ranks above
      # each tail target (experiments/mine_distractors.py).
      'ghost': dict(backbone=backbone, auo=True, alpha=0.1, k_a=200, k_b=5,
                    distractors_npy=''),
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


def given_distractors(path: str, fallback: np.ndarray, is_head: np.ndarray) -> np.ndarray:
  """The [I, K_b] distractors in the .npy at `path`, each tail item's row completed (where it
  has -1) from `fallback`'s row in order, never repeating an item."""
  given = np.load(path)
  if (given.shape != fallback.shape or not np.issubdtype(given.dtype, np.integer)
      or given.min() < -1 or given.max() >= len(is_head)):
    raise ValueError(f'ghost.distractors_npy={path}: expected integer item indices (or -1) '
                     f'of shape {fallback.shape}, got {given.dtype} {given.shape}; make it with '
                     'experiments/mine_distractors.py on this dataset and ghost.k_b.')
  tails = np.flatnonzero(~is_head)
  if (given[tails] >= 0).any() and not is_head[given[tails][given[tails] >= 0]].all():
    raise ValueError(f'ghost.distractors_npy={path}: a distractor is a tail item; AUO pushes '
                     'down head items only.')
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
    if g.distractors_npy:
      distractors = given_distractors(g.distractors_npy, distractors, dataset.is_head)
    terms.append(AUO(g.alpha, item_tokens, np.maximum(distractors, 0), ~dataset.is_head))
  return BACKBONES[g.backbone].build(config, dataset, inputs, terms=terms)
