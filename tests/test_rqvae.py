"""RQ-VAE tokenizer and LETTER regularisers on small synthetic data (CPU, well under a minute)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genrec_jax.tokenize import letter
from genrec_jax.tokenize import rqvae

NUM_POINTS, INPUT_DIM, NUM_TOPICS = 2000, 32, 16


def _clustered_data(seed: int = 0) -> np.ndarray:
  """[2000, 32] points around 16 centres with Zipf-like sizes (largest ~30% of the points)."""
  rng = np.random.default_rng(seed)
  centres = 2.0 * rng.normal(size=(NUM_TOPICS, INPUT_DIM))
  weights = 1.0 / np.arange(1, NUM_TOPICS + 1)
  topics = rng.choice(NUM_TOPICS, NUM_POINTS, p=weights / weights.sum())
  return (centres[topics] + 0.5 * rng.normal(size=(NUM_POINTS, INPUT_DIM))).astype(np.float32)


def _small_config(**overrides):
  config = rqvae.default_rqvae_config()
  config.hidden_sizes = (64,)
  config.latent_dim = 8
  config.num_levels = 3
  config.codes_per_level = 16
  config.batch_size = 256
  config.epochs = 20
  config.lr = 3e-3
  config.sinkhorn_epsilons = (0.0, 0.0, 0.0)
  config.update(overrides)
  return config


@pytest.fixture(scope='module')
def data():
  return _clustered_data()


@pytest.fixture(scope='module')
def trained(data):
  return rqvae.train_rqvae(data, _small_config(), jax.random.key(0), progress=False)


def test_training_lowers_reconstruction_loss(trained):
  assert trained.final_losses['recon'] < 0.3 * trained.initial_losses['recon']
  recon = trained.history['recon']
  assert recon.shape == (20,) and recon[-1] < 0.5 * recon[0]
  assert np.all(np.isfinite(trained.history['total']))


def test_codes_are_used_without_collapse(trained):
  assert trained.codes.shape == (NUM_POINTS, 3) and trained.codes.dtype == np.int32
  assert trained.code_counts.shape == (3, 16)
  assert np.all(trained.code_counts.sum(axis=1) == NUM_POINTS)
  assert np.all(trained.code_usage >= 0.5)  # at least 8 of the 16 codes on every level
  assert np.all(trained.code_counts.max(axis=1) < 0.5 * NUM_POINTS)


def test_encode_matches_training_codes(trained, data):
  codes = rqvae.encode(trained.params, _small_config(), data)
  np.testing.assert_array_equal(codes, trained.codes)


def test_kmeans_init_beats_random_init(data):
  key = jax.random.key(3)
  kmeans_losses = rqvae.evaluate_losses(
      rqvae.init_rqvae(data, _small_config(kmeans_init=True), key), _small_config(), data)
  random_losses = rqvae.evaluate_losses(
      rqvae.init_rqvae(data, _small_config(kmeans_init=False), key), _small_config(), data)
  assert kmeans_losses['quant'] < 0.5 * random_losses['quant']
  assert kmeans_losses['total'] < random_losses['total']


def test_straight_through_gives_encoder_gradients(data):
  config = _small_config()
  params = rqvae.init_rqvae(data, config, jax.random.key(4))
  encoder = rqvae.MLP(tuple(config.hidden_sizes) + (config.latent_dim,))
  decoder = rqvae.MLP(tuple(config.hidden_sizes)[::-1] + (INPUT_DIM,))
  x = jnp.asarray(data[:128])

  def recon_loss(encoder_params, straight_through):
    latent = encoder.apply({'params': encoder_params}, x)
    quantized = rqvae.quantize(latent, params['codebooks'])
    decoder_input = (quantized.straight_through if straight_through
                     else quantized.code_vectors.sum(axis=0))
    recon = decoder.apply({'params': params['decoder']}, decoder_input)
    return jnp.mean((recon - x)**2)

  grad_fn = jax.jit(jax.grad(recon_loss), static_argnums=1)
  for leaf in jax.tree.leaves(grad_fn(params['encoder'], True)):
    assert float(jnp.abs(leaf).sum()) > 0
  # Without the straight-through estimator the codes block every encoder gradient.
  blocked = grad_fn(params['encoder'], False)
  assert all(float(jnp.abs(leaf).sum()) == 0 for leaf in jax.tree.leaves(blocked))


def test_quantization_losses_match_hand_computation():
  latent = jnp.array([[1.0, 0.0], [0.0, 2.0]])
  codebooks = jnp.array([[[1.0, 0.5], [0.0, 1.0]],  # level 0
                         [[0.0, -1.0], [0.5, 0.5]]])  # level 1
  quantized = rqvae.quantize(latent, codebooks)
  # Level 0: [1,0] is 0.25 from code 0 (2 from code 1); [0,2] is 1 from code 1 (3.25).
  # Residuals [0,-0.5] and [0,1]: 0.25 from code 0 and 0.5 from code 1 of level 1.
  np.testing.assert_array_equal(quantized.codes, [[0, 0], [1, 1]])
  np.testing.assert_allclose(quantized.residuals[1], [[0.0, -0.5], [0.0, 1.0]])
  np.testing.assert_allclose(quantized.straight_through, [[1.0, -0.5], [0.5, 1.5]])
  codebook_loss, commitment_loss = rqvae.quantization_losses(quantized)
  # mean over rows and dims of (e - r)^2: level 0 (0.25/2 + 1/2)/2, level 1 (0.25/2 + 0.5/2)/2
  np.testing.assert_allclose(codebook_loss, [0.3125, 0.1875], rtol=1e-6)
  np.testing.assert_allclose(commitment_loss, [0.3125, 0.1875], rtol=1e-6)
  masked_codebook, _ = rqvae.quantization_losses(quantized, jnp.array([1.0, 0.0]))
  np.testing.assert_allclose(masked_codebook, [0.125, 0.125], rtol=1e-6)

  def commitment(latent, level):
    return rqvae.quantization_losses(rqvae.quantize(latent, codebooks))[1][level]

  # d/dz mean (z - sg e)^2 = 2 (z - e) / (B D) at level 0; deeper residuals are constants.
  np.testing.assert_allclose(jax.grad(commitment)(latent, 0),
                             2 * np.array([[0.0, -0.5], [0.0, 1.0]]) / 4, rtol=1e-6)
  np.testing.assert_allclose(jax.grad(commitment)(latent, 1), np.zeros((2, 2)))


def test_deterministic_given_key(data):
  config = _small_config(epochs=3)
  first = rqvae.train_rqvae(data, config, jax.random.key(7), progress=False)
  again = rqvae.train_rqvae(data, config, jax.random.key(7), progress=False)
  other = rqvae.train_rqvae(data, config, jax.random.key(8), progress=False)
  np.testing.assert_array_equal(first.codes, again.codes)
  for a, b in zip(jax.tree.leaves(first.params), jax.tree.leaves(again.params)):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(first.history['total'], again.history['total'])
  assert not np.array_equal(first.history['total'], other.history['total'])


def test_sinkhorn_level_balances_code_usage(data, trained):
  balanced = rqvae.train_rqvae(data, _small_config(sinkhorn_epsilons=(0.003, 0.0, 0.0)),
                               jax.random.key(0), progress=False)
  plain_max, balanced_max = trained.code_counts[0].max(), balanced.code_counts[0].max()
  assert balanced_max < 0.8 * plain_max
  assert balanced.code_usage[0] == 1.0
  assert balanced.final_losses['recon'] < 0.3 * balanced.initial_losses['recon']


def test_config_checks(data):
  with pytest.raises(ValueError, match='sinkhorn_epsilons'):
    rqvae.train_rqvae(data, _small_config(sinkhorn_epsilons=(0.0,)), jax.random.key(0),
                      progress=False)
  with pytest.raises(ValueError, match='cf_embeddings'):
    rqvae.train_rqvae(data, _small_config(letter_alpha=0.1), jax.random.key(0), progress=False)
  with pytest.raises(ValueError, match='latent_dim'):
    rqvae.train_rqvae(data, _small_config(letter_alpha=0.1), jax.random.key(0),
                      cf_embeddings=np.zeros((NUM_POINTS, 4)), progress=False)
  for variant in ('cpu', 'tiger', 'lcrec', 'letter'):
    config = rqvae.default_rqvae_config(variant)
    assert len(config.sinkhorn_epsilons) == config.num_levels


# LETTER.


def _collaborative_reference(quantized, cf, mask):
  rows = []
  valid = [j for j in range(len(mask)) if mask[j]]
  for i in valid:
    logits = np.array([quantized[i] @ cf[j] for j in valid], np.float64)
    rows.append(np.log(np.sum(np.exp(logits))) - quantized[i] @ cf[i])
  return np.mean(rows)


def test_collaborative_loss_matches_reference():
  rng = np.random.default_rng(0)
  quantized = rng.normal(size=(6, 4)).astype(np.float32)
  cf = rng.normal(size=(6, 4)).astype(np.float32)
  mask = np.array([1, 1, 1, 1, 0, 0], np.float32)
  np.testing.assert_allclose(letter.collaborative_loss(quantized, cf, mask),
                             _collaborative_reference(quantized, cf, mask), rtol=1e-5)
  np.testing.assert_allclose(letter.collaborative_loss(quantized, cf),
                             _collaborative_reference(quantized, cf, np.ones(6)), rtol=1e-5)
  # Matching the CF embeddings themselves scores better than a shuffled pairing.
  aligned = letter.collaborative_loss(3 * cf, cf)
  assert aligned < letter.collaborative_loss(3 * cf[::-1], cf)


def _diversity_reference(code_vectors, codebook, codes, positives, mask):
  rows = []
  for i in range(len(codes)):
    if not mask[i]:
      continue
    others = [j for j in range(len(codebook)) if j != codes[i]]
    logits = np.array([code_vectors[i] @ codebook[j] for j in others], np.float64)
    rows.append(np.log(np.sum(np.exp(logits))) - code_vectors[i] @ codebook[positives[i]])
  return np.mean(rows)


def test_positive_codes_come_from_the_same_cluster():
  code_clusters = jnp.array([0, 0, 0, 1, 1, 2])  # code 5 is alone in its cluster
  codes = jnp.array([0, 1, 2, 3, 4, 5] * 50)
  positives, has_positive = letter.sample_positive_codes(jax.random.key(0), codes,
                                                         code_clusters)
  positives, has_positive, codes = map(np.asarray, (positives, has_positive, codes))
  np.testing.assert_array_equal(has_positive, codes != 5)
  clusters = np.asarray(code_clusters)
  ok = has_positive
  assert np.all(clusters[positives[ok]] == clusters[codes[ok]])
  assert np.all(positives[ok] != codes[ok])
  assert set(positives[codes == 0]) == {1, 2}  # both cluster-mates get drawn


def test_diversity_loss_matches_reference():
  rng = np.random.default_rng(1)
  codebook = rng.normal(size=(6, 3)).astype(np.float32)
  codes = np.array([0, 1, 3, 4, 2, 5])
  positives = np.array([1, 2, 4, 3, 0, 5])
  mask = np.array([1, 1, 1, 1, 1, 0], np.float32)  # code 5 has no cluster-mate
  code_vectors = codebook[codes]
  np.testing.assert_allclose(
      letter.diversity_loss(code_vectors, codebook, codes, positives, mask),
      _diversity_reference(code_vectors, codebook, codes, positives, mask), rtol=1e-5)
  # The gradient reaches the codebook through both the chosen and the other codes.
  grad = jax.grad(lambda e: letter.diversity_loss(e[codes], e, codes, positives, mask))(
      jnp.asarray(codebook))
  assert float(jnp.abs(grad).sum()) > 0


def _cf_neighbour_agreement(codes, cf_embeddings) -> float:
  """Fraction of items sharing their first code with their nearest CF (cosine) neighbour."""
  cf = cf_embeddings / np.linalg.norm(cf_embeddings, axis=1, keepdims=True)
  similarity = cf @ cf.T
  np.fill_diagonal(similarity, -2.0)  # below any cosine: never one's own neighbour
  first = codes[:, 0]
  return float(np.mean(first == first[similarity.argmax(axis=1)]))


def test_collaborative_loss_moves_first_code_towards_cf_neighbours():
  # Text is dominated by 8 topics; the CF groups (independent of topics) are a weaker signal.
  rng = np.random.default_rng(0)
  num_items, latent_dim = 1000, 8
  topic, group = rng.integers(8, size=num_items), rng.integers(8, size=num_items)
  x = (3.0 * rng.normal(size=(8, INPUT_DIM))[topic] + rng.normal(size=(8, INPUT_DIM))[group]
       + 0.3 * rng.normal(size=(num_items, INPUT_DIM))).astype(np.float32)
  cf = (rng.normal(size=(8, latent_dim))[group]
        + 0.3 * rng.normal(size=(num_items, latent_dim))).astype(np.float32)
  agreement = {}
  for alpha in (0.0, 1.0):
    config = _small_config(num_levels=2, codes_per_level=8, sinkhorn_epsilons=(0.0, 0.0),
                           batch_size=250, epochs=30, letter_alpha=alpha)
    result = rqvae.train_rqvae(x, config, jax.random.key(0), cf_embeddings=cf, progress=False)
    agreement[alpha] = _cf_neighbour_agreement(result.codes, cf)
  assert agreement[1.0] > agreement[0.0] + 0.1, agreement


def test_diversity_regulariser_trains(data):
  config = _small_config(epochs=2, letter_beta=0.1, letter_num_clusters=4)
  result = rqvae.train_rqvae(data, config, jax.random.key(0), progress=False)
  assert result.history['diversity'].shape == (2,)
  assert np.all(np.isfinite(result.history['diversity']))
  clusters = letter.cluster_codebooks(result.params['codebooks'], 4, jax.random.key(1))
  assert clusters.shape == (3, 16) and int(clusters.min()) >= 0 and int(clusters.max()) < 4
