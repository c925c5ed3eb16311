"""The tokenize stage: item embeddings -> SIDTable, cached in the workdir.

config.tokenize.method picks the tokenizer:
  rq_kmeans   RQ-KMeans, `levels` × `codes_per_level` (LC-Rec's RQK-4 / RQK-6 ablations);
  skt         Ghost's skeleton-founded tokenization (head_levels + tail_levels, EOS);
  rqk_var     variable length without inheritance (Ghost's RQK-4-6: head_levels/tail_levels);
  precomputed SIDs from an LC-Rec / LETTER `X.index.json` ({item: ["<a_12>", "<b_3>", ...]}),
              e.g. LETTER's own SIDs (tokenize.index_path);
  rqvae       RQ-VAE (TIGER, LC-Rec; Sinkhorn on chosen levels);
  letter      RQ-VAE + LETTER's collaborative and diversity regularisers.
Embeddings are first reduced by PCA to `pca_dim` (0 keeps them; the papers use an MLP to 32
dims). SKT picks each tail item's head anchor by cosine similarity in `skt_anchor_space`:
'pca' (default) the same reduced space X_v its residual is taken in, as Ghost's equations
imply; 'full' the full embeddings (the earlier behaviour, kept for comparison). Then the
dedup level (`dedup`) makes every SID unique; the collision rate before it is recorded.
"""

from __future__ import annotations

import json
import os
import re

from absl import logging
import jax
import ml_collections
import numpy as np

from genrec_jax.data.dataset import Dataset
from genrec_jax.data.dataset import fingerprint
from genrec_jax.data.raw import DataError
from genrec_jax.data.raw import read_json_object
from genrec_jax.tokenize import rq_kmeans
from genrec_jax.tokenize import rqvae
from genrec_jax.tokenize import skt
from genrec_jax.tokenize.sid_table import SIDTable
from genrec_jax.tokenize.sid_table import add_dedup_level
from genrec_jax.tokenize.rqvae import default_rqvae_config

METHODS = ('rq_kmeans', 'skt', 'rqk_var', 'rqvae', 'letter', 'precomputed')
LEVEL_NAMES = 'abcdefghijklmnop'
SKT_ANCHOR_SPACES = ('pca', 'full')


def default_tokenize_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      method='rq_kmeans',
      levels=4,  # rq_kmeans / rqvae / letter
      codes_per_level=256,
      head_levels=3,  # skt / rqk_var: L^h
      tail_levels=2,  # skt: L^t extra tail levels; rqk_var: total tail levels
      skt_anchor_space='pca',  # skt: cosine for head anchors in 'pca' (X_v) or 'full' space
      pca_dim=32,
      normalize_residuals=False,
      kmeans_iters=100,
      kmeans_tol=0.0,  # Lloyd until labels stop changing: scikit-learn's inertia, 3-5x faster
      balanced_last_level=False,  # Sinkhorn-balanced last RQ-KMeans level
      dedup='colliding',  # 'colliding' | 'all' (TIGER) | 'none'
      rqvae=default_rqvae_config(),  # rqvae / letter (levels and codes_per_level above win)
      index_path='',  # precomputed: the X.index.json file
  ))


def validate_tokenize_config(tok) -> None:
  if tok.method not in METHODS:
    raise ValueError(f'Invalid config.tokenize.method {tok.method!r}: use one of {METHODS}.')
  if tok.skt_anchor_space not in SKT_ANCHOR_SPACES:
    raise ValueError(f'Invalid config.tokenize.skt_anchor_space {tok.skt_anchor_space!r}: use '
                     "'pca' (anchors chosen in the PCA space of the residuals) or 'full' "
                     '(the full embeddings).')
  if tok.dedup not in ('colliding', 'all', 'none'):
    raise ValueError("Invalid config.tokenize.dedup: use 'colliding', 'all' or 'none'.")
  for field in ('levels', 'codes_per_level', 'head_levels', 'tail_levels'):
    if tok[field] < 1:
      raise ValueError(f'Invalid config.tokenize.{field}: must be >= 1.')
  if tok.method == 'precomputed' and not tok.index_path:
    raise ValueError('Invalid config.tokenize.index_path: precomputed SIDs need the path of '
                     'an X.index.json file.')
  if tok.method == 'rqk_var' and tok.tail_levels <= tok.head_levels:
    raise ValueError('Invalid config.tokenize.tail_levels: rqk_var needs tail_levels > '
                     'head_levels (e.g. 4 and 6 for RQK-4-6).')


def build_sids(tok, dataset: Dataset, embeddings: np.ndarray, seed: int,
               workdir: str | None = None, cf_embeddings: np.ndarray | None = None
               ) -> SIDTable:
  """The SID table for `dataset`, from the workdir cache when the same inputs made one.

  cf_embeddings: [I, d] collaborative item vectors (another run's, see embed.cf_run), which
  LETTER's tokenizer aligns with."""
  tok_key = tok.to_dict()
  if tok.method != 'skt':  # only SKT reads it: other methods keep their cached SIDs
    tok_key.pop('skt_anchor_space', None)
  cf_key = ()
  if tok.method == 'letter':
    if cf_embeddings is None:
      raise ValueError('tokenize.method=letter needs collaborative item vectors: set '
                       'embed.cf_run to the workdir of a SASRec run on this dataset.')
    cf_key = (cf_embeddings.shape, float(np.asarray(cf_embeddings, np.float64).sum()))
  key = fingerprint(tok_key, seed, embeddings.shape,
                    float(np.asarray(embeddings, np.float64).sum()), dataset.is_head.tolist(),
                    *cf_key)
  path = os.path.join(workdir, 'sids', f'{tok.method}-{key}.npz') if workdir else None
  if path and os.path.exists(path):
    logging.info('Loaded cached SIDs %s', path)
    return SIDTable.load(path, dataset.num_items)
  table = _fit(tok, dataset, embeddings, jax.random.PRNGKey(seed), cf_embeddings)
  if path:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    table.save(path[:-4] + '.tmp.npz')
    os.replace(path[:-4] + '.tmp.npz', path)
  return table


def _fit(tok, dataset: Dataset, embeddings: np.ndarray, key: jax.Array,
         cf_embeddings: np.ndarray | None) -> SIDTable:
  x = reduce_dim(embeddings, tok.pca_dim)
  kmeans_args = dict(num_iters=tok.kmeans_iters, tol=tok.kmeans_tol,
                     normalize_residuals=tok.normalize_residuals)
  if tok.method == 'rq_kmeans':
    size = min(tok.codes_per_level, len(x))
    model = rq_kmeans.fit_rq_kmeans(x, tok.levels, size, key,
                                    balanced_last_level=tok.balanced_last_level, **kmeans_args)
    codes = np.asarray(rq_kmeans.encode(model, x)[0], np.int32)
    eos, level_sizes, info = np.zeros(len(x), bool), [size] * tok.levels, {}
  elif tok.method == 'skt':
    similarity = x if tok.skt_anchor_space == 'pca' else embeddings
    codes, eos, level_sizes, info = skt.skt_codes(
        x, similarity, dataset.is_head, key, head_levels=tok.head_levels,
        tail_levels=tok.tail_levels, codes_per_level=tok.codes_per_level, **kmeans_args)
  elif tok.method == 'rqk_var':
    codes, eos, level_sizes, info = skt.variable_length_codes(
        x, dataset.is_head, key, head_levels=tok.head_levels, tail_levels=tok.tail_levels,
        codes_per_level=tok.codes_per_level, **kmeans_args)
  elif tok.method == 'precomputed':
    codes, level_sizes = precomputed_codes(tok.index_path, dataset.item_ids)
    eos, info = np.zeros(len(codes), bool), {'index_path': tok.index_path}
  else:  # rqvae / letter, on the full embeddings (the encoder MLP reduces them)
    codes, eos, level_sizes = _rqvae_codes(tok, embeddings, key, cf_embeddings)
    info = {}
  codes, dedup_size, collision_rate = add_dedup_level(codes, eos, tok.dedup)
  names = list(LEVEL_NAMES[:len(level_sizes)])
  if tok.dedup != 'none':
    level_sizes.append(dedup_size)
    names.append('dedup')
  info.update(method=tok.method, collision_rate=collision_rate)
  return SIDTable(codes=codes, level_sizes=tuple(level_sizes), ends_with_eos=eos,
                  level_names=tuple(names), info=info)


_SID_TOKEN = re.compile(r'^<([a-z])_(\d+)>$')


def precomputed_codes(path: str, item_ids: np.ndarray) -> tuple[np.ndarray, list[int]]:
  """(codes [I, L], level sizes) from an index.json of '<a_12>'-style tokens per item."""
  index = read_json_object(path, '{item id: ["<a_N>", "<b_N>", ...]} (set '
                           'tokenize.index_path to the X.index.json of this dataset)')
  rows = []
  for item in item_ids:
    tokens = index.get(str(item))
    if tokens is None:
      raise DataError(f'{path}: no SID for item {item}; the index does not belong to this '
                      'dataset (or was made before filtering).')
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
      raise DataError(f'{path}: item {item} maps to {json.dumps(tokens)}; expected a list '
                      'of SID tokens like ["<a_12>", "<b_3>"].')
    levels = [_SID_TOKEN.match(t) for t in tokens]
    if not all(levels) or [m.group(1) for m in levels] != list(LEVEL_NAMES[:len(levels)]):
      raise DataError(f'{path}: item {item} has SID {tokens}; expected tokens "<a_N>", '
                      '"<b_N>", ... in level order.')
    rows.append([int(m.group(2)) for m in levels])
  if len({len(r) for r in rows}) != 1:
    raise DataError(f'{path}: SIDs of different lengths; precomputed SIDs must share one.')
  codes = np.asarray(rows, np.int32)
  return codes, [int(codes[:, level].max()) + 1 for level in range(codes.shape[1])]


def _rqvae_codes(tok, embeddings, key, cf):
  config = tok.rqvae.copy_and_resolve_references()
  size = min(tok.codes_per_level, len(embeddings))
  last_epsilon = config.sinkhorn_epsilons[-1]  # Sinkhorn on the last level only (LC-Rec)
  config.update(num_levels=tok.levels, codes_per_level=size,
                sinkhorn_epsilons=(0.0,) * (tok.levels - 1) + (last_epsilon,),
                letter_num_clusters=min(config.letter_num_clusters, size))
  if tok.method != 'letter':
    cf = None
  else:
    if config.letter_alpha <= 0:
      config.letter_alpha, config.letter_beta = 0.01, 1e-4  # LETTER's script defaults
    if cf.shape[1] != config.latent_dim:  # LETTER uses 32-d SASRec vectors; else PCA
      cf = reduce_dim(cf, config.latent_dim)
  result = rqvae.train_rqvae(embeddings, config, key, cf_embeddings=cf)
  return np.asarray(result.codes, np.int32), np.zeros(len(embeddings), bool), [size] * tok.levels


def reduce_dim(x: np.ndarray, dim: int) -> np.ndarray:
  """PCA to `dim` components (0, or dim >= min(N, D), keeps x)."""
  x = np.asarray(x, np.float32)
  if not dim or dim >= min(x.shape):
    return x
  mean, components = rq_kmeans.fit_pca(x, dim)
  return np.asarray((x - mean) @ components.T)


