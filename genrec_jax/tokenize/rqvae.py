"""RQ-VAE item tokenizer: MLP autoencoder + residual vector quantiser (TIGER, LC-Rec, LETTER).

An item's text embedding x [D_in] is encoded to a latent z [D]. Level l picks the code
c_l = argmin_k ||r_l - e_{l,k}||^2 on the residual (r_0 = z, r_{l+1} = r_l - e_{l,c_l}); the
decoder reconstructs x from the straight-through sum z + sg(sum_l e_{l,c_l} - z). The semantic
ID of the item is (c_0, ..., c_{L-1}).

Loss (LC-Rec index/models/{rqvae,rq,vq}.py; means are over rows and features, as F.mse_loss):
  recon = mean (x_hat - x)^2
  quant = mean_l [ mean (e_{l,c_l} - sg r_l)^2 + beta * mean (sg e_{l,c_l} - r_l)^2 ]
  total = recon + quant_loss_weight * (quant + letter_beta * L_div) + letter_alpha * L_cf
with the LETTER terms of `letter.py` (on when their weight is > 0). Residuals past level 0 are
constants for the gradient, r_{l+1} = sg(r_l - e_l), which is what LC-Rec's per-level
straight-through output gives: each codebook learns from its own level only and only level 0's
commitment reaches the encoder.

Codebooks start from k-means (`kmeans.kmeans`) level by level on the residuals of the init data
(`kmeans_init_data`: 'first_batch' as LC-Rec, whose codebooks initialise on the first training
batch, or 'all' as LETTER's vq_init), else from U(-1/K, 1/K) as LC-Rec without kmeans_init.

Sinkhorn levels (`sinkhorn_epsilons[l] > 0`, LC-Rec's sk_epsilons): that level's codes come from
`sinkhorn.balanced_assign` of the squared distances instead of argmin: per mini-batch in
training (LC-Rec/LETTER forward with use_sk=True) and, if `sinkhorn_at_encode`, over all items
given to `encode` (LC-Rec's generate_indices re-assigns only the items of colliding IDs with it;
over all items it balances the whole level). epsilon is in LC-Rec's units: relative to half the
distance range of the batch (center_distance_for_constraint), converted to sinkhorn.py's scale.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from genrec_jax import progress as progress_lib
from genrec_jax.tokenize import kmeans as kmeans_lib
from genrec_jax.tokenize import letter
from genrec_jax.tokenize import sinkhorn as sinkhorn_lib


def default_rqvae_config(variant: str = 'cpu') -> ml_collections.ConfigDict:
  """All RQ-VAE fields. `cpu` is sized for a laptop CPU; 'tiger', 'lcrec', 'letter' follow
  the papers' scripts (optimizer always AdamW here; TIGER used Adagrad, lr 0.4)."""
  config = ml_collections.ConfigDict()
  config.hidden_sizes = (256, 128)  # TIGER (512, 256, 128); LC-Rec/LETTER (2048, ..., 64)
  config.latent_dim = 32  # all three papers
  config.num_levels = 3  # TIGER 3 (+1 collision token); LC-Rec/LETTER 4
  config.codes_per_level = 256  # all three papers
  config.beta = 0.25  # commitment weight (LETTER's mu)
  config.quant_loss_weight = 1.0
  config.lr = 1e-3
  config.weight_decay = 1e-4
  config.batch_size = 1024
  config.epochs = 200  # LC-Rec 10000, LETTER 20000, TIGER 20000
  config.dropout = 0.0
  config.kmeans_init = True
  config.kmeans_init_data = 'all'  # 'all' (LETTER) or 'first_batch' (LC-Rec, TIGER)
  config.kmeans_iters = 100
  config.kmeans_balanced = False  # LETTER's init k-means is size-constrained
  config.sinkhorn_epsilons = (0.0, 0.0, 0.003)  # per level; LC-Rec (0, 0, 0, 0.003)
  config.sinkhorn_iters = 50
  config.sinkhorn_at_encode = True
  config.letter_alpha = 0.0  # CF alignment weight; LETTER script 0.01 (main.py 0.1)
  config.letter_beta = 0.0  # codebook diversity weight; LETTER script 1e-4 (main.py 0.1)
  config.letter_num_clusters = 10  # codebook groups for the diversity loss
  if variant == 'tiger':
    config.hidden_sizes = (512, 256, 128)
    config.sinkhorn_epsilons = (0.0, 0.0, 0.0)
    config.kmeans_init_data = 'first_batch'
    config.epochs = 20000
  elif variant in ('lcrec', 'letter'):
    config.hidden_sizes = (2048, 1024, 512, 256, 128, 64)
    config.num_levels = 4
    config.sinkhorn_epsilons = (0.0, 0.0, 0.0, 0.003)
    config.kmeans_init_data = 'first_batch'
    config.epochs = 10000
    if variant == 'letter':
      config.kmeans_init_data = 'all'
      config.kmeans_balanced = True
      config.epochs = 20000
      config.letter_alpha = 0.01
      config.letter_beta = 1e-4
  elif variant != 'cpu':
    raise ValueError(f"unknown variant {variant!r}; use 'cpu', 'tiger', 'lcrec' or 'letter'")
  return config


class MLP(nn.Module):
  """Dense layers with ReLU between them (none after the last), dropout before each layer
  and Xavier-normal kernels, as LC-Rec's MLPLayers."""
  features: Sequence[int]
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, *, deterministic: bool = True) -> jax.Array:
    for index, width in enumerate(self.features):
      x = nn.Dropout(self.dropout)(x, deterministic=deterministic)
      x = nn.Dense(width, kernel_init=nn.initializers.xavier_normal())(x)
      if index < len(self.features) - 1:
        x = nn.relu(x)
    return x


@dataclasses.dataclass(frozen=True)
class _Spec:
  """The static (hashable) part of a config that shapes the jitted computations."""
  input_dim: int
  hidden_sizes: tuple[int, ...]
  latent_dim: int
  num_levels: int
  codes_per_level: int
  dropout: float
  beta: float
  quant_loss_weight: float
  sinkhorn_epsilons: tuple[float, ...]
  sinkhorn_iters: int
  letter_alpha: float
  letter_beta: float

  @property
  def encoder(self) -> MLP:
    return MLP(self.hidden_sizes + (self.latent_dim,), self.dropout)

  @property
  def decoder(self) -> MLP:
    return MLP(self.hidden_sizes[::-1] + (self.input_dim,), self.dropout)


def _spec(config: ml_collections.ConfigDict, input_dim: int) -> _Spec:
  epsilons = tuple(float(e) for e in config.sinkhorn_epsilons)
  if len(epsilons) != config.num_levels:
    raise ValueError(f'sinkhorn_epsilons has {len(epsilons)} entries but num_levels is '
                     f'{config.num_levels}; give one epsilon per level (0 = argmin).')
  if config.kmeans_init_data not in ('all', 'first_batch'):
    raise ValueError(f"kmeans_init_data must be 'all' or 'first_batch', "
                     f'got {config.kmeans_init_data!r}.')
  return _Spec(int(input_dim), tuple(int(h) for h in config.hidden_sizes),
               int(config.latent_dim), int(config.num_levels), int(config.codes_per_level),
               float(config.dropout), float(config.beta), float(config.quant_loss_weight),
               epsilons, int(config.sinkhorn_iters), float(config.letter_alpha),
               float(config.letter_beta))


class Quantized(NamedTuple):
  codes: jax.Array  # [B, L] int32
  code_vectors: jax.Array  # [L, B, D] chosen codebook rows (gradient to the codebooks)
  residuals: jax.Array  # [L, B, D] each level's input residual
  straight_through: jax.Array  # [B, D] value sum_l e_l, gradient identity to the latent


def _squared_distances(points: jax.Array, codebook: jax.Array) -> jax.Array:
  """||p - e||^2 [B, K] for points [B, D] and codebook [K, D]."""
  return (jnp.sum(points**2, axis=1, keepdims=True) + jnp.sum(codebook**2, axis=1)[None, :]
          - 2.0 * points @ codebook.T)


def _sinkhorn_codes(distances: jax.Array, epsilon: float, num_iters: int) -> jax.Array:
  """Balanced codes [B] with LC-Rec's epsilon: LC-Rec divides distances by half their range,
  sinkhorn.py by the largest row-shifted distance, so epsilon is rescaled by their ratio."""
  half_range = (jnp.max(distances) - jnp.min(distances)) / 2.0 + 1e-5
  row_shifted_max = jnp.max(distances - jnp.min(distances, axis=1, keepdims=True))
  relative_epsilon = epsilon * half_range / jnp.maximum(row_shifted_max, 1e-12)
  return sinkhorn_lib.balanced_assign(distances, relative_epsilon, num_iters)


def assign_codes(residual: jax.Array, codebook: jax.Array, sinkhorn_epsilon: float = 0.0,
                 sinkhorn_iters: int = 50) -> jax.Array:
  """Codes [B] int32: nearest code, or Sinkhorn-balanced when sinkhorn_epsilon > 0."""
  distances = _squared_distances(jax.lax.stop_gradient(residual),
                                 jax.lax.stop_gradient(codebook))
  if sinkhorn_epsilon > 0:
    return _sinkhorn_codes(distances, sinkhorn_epsilon, sinkhorn_iters)
  return jnp.argmin(distances, axis=1).astype(jnp.int32)


def quantize(latent: jax.Array, codebooks: jax.Array,
             sinkhorn_epsilons: Sequence[float] | None = None,
             sinkhorn_iters: int = 50) -> Quantized:
  """Residual quantisation of latent [B, D] with codebooks [L, K, D] (see module doc)."""
  num_levels = codebooks.shape[0]
  epsilons = (0.0,) * num_levels if sinkhorn_epsilons is None else tuple(sinkhorn_epsilons)
  residual = latent
  codes, vectors, residuals = [], [], []
  for level in range(num_levels):
    level_codes = assign_codes(residual, codebooks[level], epsilons[level], sinkhorn_iters)
    level_vectors = codebooks[level][level_codes]  # [B, D]
    codes.append(level_codes)
    vectors.append(level_vectors)
    residuals.append(residual)
    residual = jax.lax.stop_gradient(residual - level_vectors)
  code_sum = sum(vectors)
  return Quantized(codes=jnp.stack(codes, axis=1), code_vectors=jnp.stack(vectors),
                   residuals=jnp.stack(residuals),
                   straight_through=latent + jax.lax.stop_gradient(code_sum - latent))


def _masked_mean(per_row: jax.Array, mask: jax.Array) -> jax.Array:
  return jnp.sum(per_row * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def quantization_losses(quantized: Quantized,
                        mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """Per-level codebook loss mean (e - sg r)^2 and commitment loss mean (sg e - r)^2, [L] each
  (commitment not yet multiplied by beta); mask [B] drops padded rows."""
  vectors, residuals = quantized.code_vectors, quantized.residuals  # [L, B, D]
  if mask is None:
    mask = jnp.ones(vectors.shape[1], jnp.float32)
  codebook_sq = jnp.mean((vectors - jax.lax.stop_gradient(residuals))**2, axis=-1)  # [L, B]
  commit_sq = jnp.mean((jax.lax.stop_gradient(vectors) - residuals)**2, axis=-1)
  per_level = jax.vmap(_masked_mean, in_axes=(0, None))
  return per_level(codebook_sq, mask), per_level(commit_sq, mask)


@functools.partial(jax.jit, static_argnums=0)
def _latents(spec: _Spec, params, x: jax.Array) -> jax.Array:
  return spec.encoder.apply({'params': params['encoder']}, x)


def init_rqvae(x: np.ndarray, config: ml_collections.ConfigDict, key: jax.Array):
  """Parameters {'encoder', 'decoder', 'codebooks' [L, K, D]}; k-means codebooks fit on x."""
  x = jnp.asarray(x, jnp.float32)
  spec = _spec(config, x.shape[1])
  encoder_key, decoder_key, codebook_key = jax.random.split(key, 3)
  params = {
      'encoder': spec.encoder.init(encoder_key, x[:1])['params'],
      'decoder': spec.decoder.init(decoder_key, jnp.zeros((1, spec.latent_dim)))['params'],
  }
  shape = (spec.num_levels, spec.codes_per_level, spec.latent_dim)
  if not config.kmeans_init:
    bound = 1.0 / spec.codes_per_level
    params['codebooks'] = jax.random.uniform(codebook_key, shape, jnp.float32, -bound, bound)
    return params
  if x.shape[0] < spec.codes_per_level:
    raise ValueError(f'k-means init needs at least codes_per_level={spec.codes_per_level} '
                     f'points, got {x.shape[0]}; use more init data or kmeans_init=False.')
  residual = _latents(spec, params, x)
  codebooks = []
  for level, level_key in enumerate(jax.random.split(codebook_key, spec.num_levels)):
    fit = kmeans_lib.kmeans(residual, spec.codes_per_level, level_key,
                            num_iters=int(config.kmeans_iters),
                            balanced=bool(config.kmeans_balanced))
    codebook = jnp.asarray(fit.centroids, jnp.float32)
    codes = assign_codes(residual, codebook, spec.sinkhorn_epsilons[level], spec.sinkhorn_iters)
    residual = residual - codebook[codes]
    codebooks.append(codebook)
  params['codebooks'] = jnp.stack(codebooks)
  return params


def _batch_losses(spec: _Spec, params, x: jax.Array, mask: jax.Array,
                  cf_embeddings: jax.Array | None, code_clusters: jax.Array | None,
                  key: jax.Array | None) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Total loss and its parts on one batch x [B, D_in] with row mask [B].

  key None = deterministic (no dropout); the diversity term needs key and code_clusters
  [L, K], the collaborative term cf_embeddings [B, D].
  """
  deterministic = key is None
  dropout_key, positive_key = (None, None) if deterministic else jax.random.split(key)
  rngs = None if deterministic else {'dropout': dropout_key}
  latent = spec.encoder.apply({'params': params['encoder']}, x, deterministic=deterministic,
                              rngs=rngs)
  quantized = quantize(latent, params['codebooks'], spec.sinkhorn_epsilons, spec.sinkhorn_iters)
  recon = spec.decoder.apply({'params': params['decoder']}, quantized.straight_through,
                             deterministic=deterministic, rngs=rngs)
  recon_loss = _masked_mean(jnp.mean((recon - x)**2, axis=-1), mask)
  codebook_loss, commitment_loss = quantization_losses(quantized, mask)
  quant_loss = jnp.mean(codebook_loss + spec.beta * commitment_loss)
  parts = {'recon': recon_loss, 'quant': quant_loss}
  regularised_quant = quant_loss
  if spec.letter_beta > 0 and code_clusters is not None and key is not None:
    level_losses = []
    for level, level_key in enumerate(jax.random.split(positive_key, spec.num_levels)):
      codes = quantized.codes[:, level]
      positives, has_positive = letter.sample_positive_codes(level_key, codes,
                                                             code_clusters[level])
      level_losses.append(letter.diversity_loss(
          quantized.code_vectors[level], params['codebooks'][level], codes, positives,
          mask * has_positive))
    parts['diversity'] = jnp.mean(jnp.stack(level_losses))
    regularised_quant = quant_loss + spec.letter_beta * parts['diversity']
  total = recon_loss + spec.quant_loss_weight * regularised_quant
  if cf_embeddings is not None:
    parts['cf'] = letter.collaborative_loss(quantized.straight_through, cf_embeddings, mask)
    total = total + spec.letter_alpha * parts['cf']
  parts['total'] = total
  return total, parts


def _batch_indices(order: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Indices [num_batches, batch_size] and row mask; the last batch is filled with the first
  items of `order` (masked out), so every batch has one static shape and only real rows."""
  num_batches = math.ceil(len(order) / batch_size)
  padding = num_batches * batch_size - len(order)
  indices = np.concatenate([order, order[:padding]]).reshape(num_batches, batch_size)
  mask = np.concatenate([np.ones(len(order)), np.zeros(padding)]).astype(np.float32)
  return indices, mask.reshape(num_batches, batch_size)


def _check_cf(cf_embeddings, num_items: int, latent_dim: int) -> jax.Array:
  cf = jnp.asarray(cf_embeddings, jnp.float32)
  if cf.shape != (num_items, latent_dim):
    raise ValueError(f'cf_embeddings must be [num_items, latent_dim] = {(num_items, latent_dim)}'
                     f', got {cf.shape}: LETTER aligns codes and CF embeddings without a '
                     'projection, so set latent_dim to the CF embedding size.')
  return cf


@functools.partial(jax.jit, static_argnums=0)
def _eval_batch(spec: _Spec, params, x, cf, indices, mask):
  cf_batch = None if cf is None else cf[indices]
  return _batch_losses(spec, params, x[indices], mask, cf_batch, None, None)[1]


def evaluate_losses(params, config: ml_collections.ConfigDict, x: np.ndarray, *,
                    cf_embeddings: np.ndarray | None = None) -> dict[str, float]:
  """Mean per-batch losses over x in order, without dropout (diversity term excluded)."""
  x = jnp.asarray(x, jnp.float32)
  spec = _spec(config, x.shape[1])
  cf = None if cf_embeddings is None else _check_cf(cf_embeddings, x.shape[0], spec.latent_dim)
  batch_size = min(int(config.batch_size), x.shape[0])
  indices, masks = _batch_indices(np.arange(x.shape[0]), batch_size)
  sums, weight = {}, 0.0
  for batch, mask in zip(indices, masks):
    parts = _eval_batch(spec, params, x, cf, jnp.asarray(batch), jnp.asarray(mask))
    for name, value in parts.items():
      sums[name] = sums.get(name, 0.0) + float(value) * float(mask.sum())
    weight += float(mask.sum())
  return {name: value / weight for name, value in sums.items()}


@functools.partial(jax.jit, static_argnums=(0, 1))
def _encode(spec: _Spec, use_sinkhorn: bool, params, x: jax.Array) -> jax.Array:
  epsilons = spec.sinkhorn_epsilons if use_sinkhorn else None
  return quantize(_latents(spec, params, x), params['codebooks'], epsilons,
                  spec.sinkhorn_iters).codes


def encode(params, config: ml_collections.ConfigDict, x: np.ndarray) -> np.ndarray:
  """Semantic IDs [N, L] int32 of x [N, D_in]; Sinkhorn levels balance over all N items when
  config.sinkhorn_at_encode, else every level takes the nearest code."""
  x = jnp.asarray(x, jnp.float32)
  spec = _spec(config, x.shape[1])
  return np.asarray(_encode(spec, bool(config.sinkhorn_at_encode), params, x))


def _optimizer(lr: float, weight_decay: float) -> optax.GradientTransformation:
  return optax.adamw(lr, weight_decay=weight_decay)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _train_step(spec: _Spec, lr: float, weight_decay: float, params, opt_state, x, cf,
                indices, mask, code_clusters, key):
  """One AdamW step on the batch x[indices] (module level, so equal specs share a compile)."""
  cf_batch = None if cf is None else cf[indices]
  grads, parts = jax.grad(
      lambda p: _batch_losses(spec, p, x[indices], mask, cf_batch, code_clusters, key),
      has_aux=True)(params)
  updates, opt_state = _optimizer(lr, weight_decay).update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, parts


class RQVAEResult(NamedTuple):
  params: dict
  codes: np.ndarray  # [N, L] int32, from `encode`
  history: dict[str, np.ndarray]  # loss name -> [epochs] mean over the epoch's batches
  initial_losses: dict[str, float]  # `evaluate_losses` before training
  final_losses: dict[str, float]  # and after
  code_counts: np.ndarray  # [L, K] items per code
  code_usage: np.ndarray  # [L] fraction of each level's codes used by at least one item
  collision_rate: float  # (items - distinct IDs) / items, LC-Rec's collision rate


def code_statistics(codes: np.ndarray, codes_per_level: int):
  """(code_counts [L, K], code_usage [L], collision_rate) of codes [N, L]."""
  codes = np.asarray(codes)
  counts = np.stack([np.bincount(codes[:, level], minlength=codes_per_level)
                     for level in range(codes.shape[1])])
  usage = (counts > 0).mean(axis=1)
  num_unique = len(np.unique(codes, axis=0))
  return counts, usage, 1.0 - num_unique / codes.shape[0]


def train_rqvae(x: np.ndarray, config: ml_collections.ConfigDict, key: jax.Array, *,
                cf_embeddings: np.ndarray | None = None, progress: bool = True) -> RQVAEResult:
  """Trains the RQ-VAE on item embeddings x [N, D_in] and returns the items' semantic IDs.

  Args:
    x: [N, D_in] item (text) embeddings.
    config: `default_rqvae_config()` fields.
    key: PRNG key; the result is a deterministic function of (x, config, key).
    cf_embeddings: [N, latent_dim] frozen CF item embeddings (e.g. SASRec), row i = item i;
      needed when config.letter_alpha > 0.
    progress: show a tqdm bar over epochs with the running losses.
  """
  x = jnp.asarray(x, jnp.float32)
  num_items = x.shape[0]
  spec = _spec(config, x.shape[1])
  if spec.letter_alpha > 0 and cf_embeddings is None:
    raise ValueError('config.letter_alpha > 0 needs cf_embeddings [num_items, latent_dim].')
  cf = None
  if spec.letter_alpha > 0:
    cf = _check_cf(cf_embeddings, num_items, spec.latent_dim)
  batch_size = min(int(config.batch_size), num_items)
  init_key, shuffle_key, step_key, cluster_key = jax.random.split(key, 4)

  def epoch_order(epoch: int) -> np.ndarray:
    return np.asarray(jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), num_items))

  init_data = x if config.kmeans_init_data == 'all' else x[epoch_order(0)[:batch_size]]
  params = init_rqvae(init_data, config, init_key)
  lr, weight_decay = float(config.lr), float(config.weight_decay)
  opt_state = _optimizer(lr, weight_decay).init(params)

  initial_losses = evaluate_losses(params, config, x, cf_embeddings=cf)
  history: dict[str, list[float]] = {}
  step = 0
  bar = progress_lib.bar(range(int(config.epochs)), desc='rqvae', disable=not progress)
  for epoch in bar:
    code_clusters = None
    if spec.letter_beta > 0:  # LETTER regroups the codebooks at every epoch's start
      code_clusters = letter.cluster_codebooks(
          params['codebooks'], int(config.letter_num_clusters),
          jax.random.fold_in(cluster_key, epoch))
    indices, masks = _batch_indices(epoch_order(epoch), batch_size)
    epoch_parts = []
    for batch, mask in zip(indices, masks):
      params, opt_state, parts = _train_step(
          spec, lr, weight_decay, params, opt_state, x, cf, jnp.asarray(batch),
          jnp.asarray(mask), code_clusters, jax.random.fold_in(step_key, step))
      epoch_parts.append(parts)
      step += 1
    means = {name: float(np.mean([float(p[name]) for p in epoch_parts]))
             for name in epoch_parts[0]}
    for name, value in means.items():
      history.setdefault(name, []).append(value)
    bar.set_postfix(loss=f"{means['total']:.4f}", recon=f"{means['recon']:.4f}")

  codes = encode(params, config, x)
  counts, usage, collision_rate = code_statistics(codes, spec.codes_per_level)
  return RQVAEResult(params=params, codes=codes,
                     history={name: np.asarray(v) for name, v in history.items()},
                     initial_losses=initial_losses,
                     final_losses=evaluate_losses(params, config, x, cf_embeddings=cf),
                     code_counts=counts, code_usage=usage, collision_rate=collision_rate)
