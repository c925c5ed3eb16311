"""Ghost (popularity bias in generative recommendation): SKT + AUO on the LC-Rec backbone.

  SKT  skeleton-founded tokenization (tokenize.method='skt', see tokenize/skt.py).
  AUO  asymmetric unlikelihood, for training examples whose target v is a tail item:
         V_rough = top K_a head items by cosine similarity of item embeddings to v;
         distractors(v) = the K_b of V_rough with the shortest longest-common-prefix with v's
           SID (ties: higher similarity first), precomputed once;
         L_AUO = −Σ_{d ∈ distractors(v)} Σ_i log(1 − P(c_d^(i) | h, c_d^(<i))), over d's
           tokens from its first token that differs from v's on (a shared prefix is v's
           own; see _generative.auo_token_mask);
         L = L_NLL + α·L_AUO, α = ghost.alpha (0.1).
The loss is computed by the shared generative stage (methods/_generative.py), with per-prefix
examples or whole-sequence chunks (distractors branch off the chunk's stream); either way
each distractor is teacher-forced from its target's own history.

Ablations are config switches: ghost.auo=False (w/o AUO), tokenize.method='rq_kmeans'
(w/o SKT; RQK-4/RQK-6 with tokenize.levels and ghost.auo=False), tokenize.method='rqk_var'
with head_levels=4, tail_levels=6 (RQK-4-6).
"""

from __future__ import annotations

import ml_collections
import numpy as np

from genrec_jax.methods import lcrec

uses_sids = True


def default_config() -> ml_collections.ConfigDict:
  config = lcrec.default_config()
  config.update({
      'ghost': dict(auo=True, alpha=0.1, k_a=200, k_b=5),
      'tokenize': dict(method='skt', head_levels=3, tail_levels=2),
  })
  return config


def validate_config(config) -> None:
  lcrec.validate_config(config)
  if config.ghost.k_b > config.ghost.k_a:
    raise ValueError('Invalid config.ghost.k_b: must be <= ghost.k_a.')


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


def build(config, dataset, sids, embeddings=None):
  g = config.ghost
  hooks = {}
  if g.auo:
    if embeddings is None:
      raise ValueError('ghost: AUO needs the item embeddings (config.embed).')
    distractors = undesired_collection(embeddings, sids.item_tokens(), dataset.is_head,
                                       g.k_a, g.k_b)
    hooks = dict(auo_weight=g.alpha, distractors=np.maximum(distractors, 0),
                 is_tail=~dataset.is_head)
  return lcrec.build(config, dataset, sids, **hooks)
