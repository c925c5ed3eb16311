"""LETTER's two RQ-VAE regularisers (Wang et al., "Learnable Item Tokenization for Generative
Recommendation", CIKM 2024; code: HonghuiBao2000/LETTER, RQ-VAE/).

Collaborative regulariser (RQ-VAE/models/rqvae.py, `CF_loss` and `compute_loss`): in-batch
softmax between the quantised latent of each item (the straight-through sum of its chosen codes,
no projection: the codes' dim equals the SASRec embedding dim, 32) and the frozen CF embedding
of the same item; the other items of the batch are the negatives:

  L_cf = mean_i [ logsumexp_j <q_i, c_j> - <q_i, c_i> ]         (plain dot product, no temperature)

Weight alpha (main.py default 0.1; train_tokenizer.sh 0.01). Its gradient reaches only the
encoder: LETTER feeds the straight-through latent, whose gradient is the identity to z.

Diversity regulariser (RQ-VAE/models/vq.py, `diversity_loss`; trainer.py `_train_epoch`): at the
start of every epoch each level's codebook [K, D] is clustered into `n_clusters` = 10 groups
(size-constrained k-means). For an item whose code on the level is c (cluster g), a positive
code p != c is drawn uniformly from cluster g, and the chosen code vector e_c (not the
straight-through latent, so the gradient reaches the codebook) is pulled towards e_p and pushed
from all other codes, c itself excluded:

  L_div = mean_i [ logsumexp_{j != c_i} <e_{c_i}, e_j> - <e_{c_i}, e_{p_i}> ]   (temperature 1)

It is added per level inside the quantisation loss, codebook + mu*commit + beta*L_div, and
averaged over levels; weight beta (main.py default 0.1; train_tokenizer.sh 1e-4). It spreads
the codes that items use over the codebook's groups, against code-assignment bias.

Every loss takes a row mask [B] (1 = real item, 0 = padding); padded items neither contribute a
row nor serve as in-batch negatives.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from genrec_jax.tokenize import kmeans as kmeans_lib

# Logit for excluded entries: finite, so logsumexp stays finite even on an all-masked row.
_MASKED_LOGIT = -1e9


def _masked_mean(per_row: jax.Array, mask: jax.Array) -> jax.Array:
  return jnp.sum(per_row * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def collaborative_loss(quantized: jax.Array, cf_embeddings: jax.Array,
                       mask: jax.Array | None = None) -> jax.Array:
  """LETTER's in-batch CF alignment loss (see module doc).

  Args:
    quantized: [B, D] quantised latents (straight-through sum of the chosen codes).
    cf_embeddings: [B, D] frozen CF embeddings of the same items, row i matches row i.
    mask: [B] 1 for real items, 0 for padding; None = all real.

  Returns:
    scalar mean cross-entropy of picking the item's own CF embedding among the batch's.
  """
  batch = quantized.shape[0]
  mask = jnp.ones((batch,), jnp.float32) if mask is None else mask.astype(jnp.float32)
  cf_embeddings = jax.lax.stop_gradient(cf_embeddings)  # frozen teacher
  logits = quantized @ cf_embeddings.T  # [B, B]
  logits = jnp.where(mask[None, :] > 0, logits, _MASKED_LOGIT)
  per_row = jax.nn.logsumexp(logits, axis=1) - jnp.diagonal(logits)  # [B]
  return _masked_mean(per_row, mask)


def cluster_codebooks(codebooks: jax.Array, num_clusters: int, key: jax.Array) -> jax.Array:
  """Cluster ids [L, K] int32 of every code, per level, by balanced k-means.

  LETTER uses size-constrained k-means (k_means_constrained, max_iter 10) so that every group
  has several codes to draw positives from; balanced k-means plays that role here.
  """
  num_levels = codebooks.shape[0]
  keys = jax.random.split(key, num_levels)
  clusters = [
      kmeans_lib.kmeans(codebooks[level], num_clusters, keys[level], num_iters=10,
                        balanced=True).assignments
      for level in range(num_levels)
  ]
  return jnp.stack(clusters).astype(jnp.int32)


def sample_positive_codes(key: jax.Array, codes: jax.Array,
                          code_clusters: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Draws a positive code per item: uniform over its code's cluster, the code itself excluded.

  Args:
    key: PRNG key.
    codes: [B] int codes of the items on one level.
    code_clusters: [K] int cluster id of each code of that level.

  Returns:
    positives [B] int32, and has_positive [B] bool (False when the code is alone in its
    cluster; such rows must be masked out of `diversity_loss`).
  """
  num_codes = code_clusters.shape[0]
  same_cluster = code_clusters[codes][:, None] == code_clusters[None, :]  # [B, K]
  not_self = jnp.arange(num_codes)[None, :] != codes[:, None]  # [B, K]
  candidates = same_cluster & not_self
  logits = jnp.where(candidates, 0.0, _MASKED_LOGIT)
  positives = jax.random.categorical(key, logits, axis=1).astype(jnp.int32)
  return positives, jnp.any(candidates, axis=1)


def diversity_loss(code_vectors: jax.Array, codebook: jax.Array, codes: jax.Array,
                   positives: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """LETTER's codebook diversity loss on one level (see module doc).

  Args:
    code_vectors: [B, D] the chosen code vectors e_{c_i} (codebook rows, with gradient).
    codebook: [K, D] the level's codebook.
    codes: [B] int chosen codes c_i.
    positives: [B] int positive codes p_i (same cluster as c_i, p_i != c_i).
    mask: [B] 1 for rows that count (real item with a positive), 0 otherwise; None = all.

  Returns:
    scalar mean cross-entropy of picking p_i among all codes but c_i.
  """
  batch, num_codes = codes.shape[0], codebook.shape[0]
  mask = jnp.ones((batch,), jnp.float32) if mask is None else mask.astype(jnp.float32)
  logits = code_vectors @ codebook.T  # [B, K]
  is_self = jnp.arange(num_codes)[None, :] == codes[:, None]
  logits = jnp.where(is_self, _MASKED_LOGIT, logits)
  positive_logit = jnp.take_along_axis(logits, positives[:, None], axis=1)[:, 0]  # [B]
  per_row = jax.nn.logsumexp(logits, axis=1) - positive_logit
  return _masked_mean(per_row, mask)

