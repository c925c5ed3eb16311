"""Ghost's skeleton-founded tokenization (SKT) and the variable-length ablation RQK-h-t.

SKT (Ghost, Sec. III-B):
  1. head items get L^h-level RQ-KMeans SIDs fitted on head items only;
  2. each tail item v' takes the head item v* with the highest cosine similarity of
     `similarity_embeddings` and inherits its L^h codes (the tokenize stage passes x itself,
     the PCA-reduced X_v the residual below lives in, or with tokenize.skt_anchor_space='full'
     the full embeddings);
  3. the tail item's residual r = X_v' − Σ_i μ^(i)_{c_v*^(i)} (the head reconstruction of v*)
     is quantised by L^t tail codebooks fitted on the tail residuals;
  4. head SIDs end with EOS, so at step L^h + 1 a head item emits EOS and a tail item its
     first tail token: the only place where head and tail paths split off a shared skeleton.

RQK-h-t ("RQK-4-6" in Ghost's Table II): one RQ-KMeans with t levels over all items; head items
keep the first h codes and end with EOS, tail items keep all t. No prefix inheritance.
"""

from __future__ import annotations

import jax
import numpy as np

from genrec_jax.tokenize import rq_kmeans


def nearest_head(similarity_embeddings: np.ndarray, is_head: np.ndarray) -> np.ndarray:
  """[I] the cosine-nearest head item of every item (a head item's own index for heads)."""
  x = similarity_embeddings / np.maximum(
      np.linalg.norm(similarity_embeddings, axis=1, keepdims=True), 1e-12)
  heads = np.flatnonzero(is_head)
  nearest = np.empty(len(x), np.int64)
  nearest[heads] = heads
  tails = np.flatnonzero(~is_head)
  for start in range(0, len(tails), 4096):  # chunked: [chunk, num_heads] similarities
    rows = tails[start:start + 4096]
    nearest[rows] = heads[np.argmax(x[rows] @ x[heads].T, axis=1)]
  return nearest


def skt_codes(x: np.ndarray, similarity_embeddings: np.ndarray, is_head: np.ndarray,
              key: jax.Array, *, head_levels: int, tail_levels: int, codes_per_level: int,
              **kmeans_args) -> tuple[np.ndarray, np.ndarray, list[int], dict]:
  """(codes [I, L^h + L^t] (-1 = unused level), ends_with_eos [I], level sizes, info)."""
  heads, tails = np.flatnonzero(is_head), np.flatnonzero(~is_head)
  head_key, tail_key = jax.random.split(key)
  head_size, tail_size = min(codes_per_level, len(heads)), min(codes_per_level, len(tails))
  head_model = rq_kmeans.fit_rq_kmeans(x[heads], head_levels, head_size, head_key,
                                       **kmeans_args)
  head_codes, _ = rq_kmeans.encode(head_model, x[heads])
  codes = np.full((len(x), head_levels + tail_levels), -1, np.int32)
  codes[heads, :head_levels] = np.asarray(head_codes)

  anchor = nearest_head(similarity_embeddings, is_head)[tails]
  codes[tails, :head_levels] = codes[anchor, :head_levels]
  residual = x[tails] - np.asarray(
      rq_kmeans.reconstruct(head_model, codes[anchor, :head_levels]))
  tail_model = rq_kmeans.fit_rq_kmeans(residual, tail_levels, tail_size, tail_key,
                                       **kmeans_args)
  codes[tails, head_levels:] = np.asarray(rq_kmeans.encode(tail_model, residual)[0])
  inheritors = np.bincount(anchor, minlength=len(x))[heads]
  info = {'inheritors_per_head_median': float(np.median(inheritors)),
          'inheritors_per_head_max': int(inheritors.max())}
  sizes = [head_size] * head_levels + [tail_size] * tail_levels
  return codes, is_head.copy(), sizes, info


def variable_length_codes(x: np.ndarray, is_head: np.ndarray, key: jax.Array, *,
                          head_levels: int, tail_levels: int, codes_per_level: int,
                          **kmeans_args) -> tuple[np.ndarray, np.ndarray, list[int], dict]:
  """RQK-h-t: one RQ-KMeans of tail_levels levels; heads cut to head_levels + EOS."""
  size = min(codes_per_level, len(x))
  model = rq_kmeans.fit_rq_kmeans(x, tail_levels, size, key, **kmeans_args)
  codes = np.array(rq_kmeans.encode(model, x)[0], np.int32)
  codes[is_head, head_levels:] = -1
  return codes, is_head.copy(), [size] * tail_levels, {}
