"""The sequential family: SASRec's scores through the seam equal the model's own forward
pass; frozen item embeddings enter through a learned adapter and stay frozen."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genrec_jax.methods.sequential import SequentialRecommender
from genrec_jax.models.sasrec import SASRec

NUM_ITEMS, MAX_LEN = 30, 6


def _batch():
  rng = np.random.default_rng(0)
  history = rng.integers(0, NUM_ITEMS, (4, MAX_LEN))
  history[:2, :3] = -1  # left padding
  return {'history': jnp.asarray(history, jnp.int32),
          'target': jnp.asarray(rng.integers(0, NUM_ITEMS, 4), jnp.int32)}


def _encoder():
  return SASRec(num_items=NUM_ITEMS, max_len=MAX_LEN, hidden=8, num_layers=1, dropout=0.0)


def test_sasrec_scores_and_loss_equal_the_models_forward_pass():
  method = SequentialRecommender(_encoder(), MAX_LEN)
  params = method.init(jax.random.PRNGKey(0))
  batch = _batch()
  direct = method.encoder.apply({'params': params}, batch['history'])  # [B, I]
  np.testing.assert_allclose(method.scores(params, batch), direct, rtol=1e-6)
  log_p = jax.nn.log_softmax(direct)[jnp.arange(4), batch['target']]
  loss, _ = method.loss_fn(params, batch, jax.random.PRNGKey(1))  # dropout 0: deterministic
  np.testing.assert_allclose(loss, -log_p.mean(), rtol=1e-6)


def test_frozen_item_embeddings_enter_through_a_learned_adapter():
  frozen = np.random.default_rng(1).normal(size=(NUM_ITEMS, 5)).astype(np.float32)
  method = SequentialRecommender(_encoder(), MAX_LEN, frozen_item_embeddings=frozen)
  params = nn.unbox(method.init(jax.random.PRNGKey(0)))
  assert params['adapter'].shape == (5, 8) and not np.any(params['adapter'])
  batch = _batch()
  grads = jax.grad(lambda p: method.loss_fn(p, batch, None)[0])(params)
  assert np.abs(np.asarray(grads['adapter'])).sum() > 0  # the adapter learns
  stepped = jax.tree.map(lambda w, g: w - 0.5 * g, params, grads)
  table = stepped['item_embedding']['embedding'][:NUM_ITEMS]
  by_hand = method.user_states(stepped, batch['history']) @ (
      table + frozen @ stepped['adapter']).T
  np.testing.assert_allclose(method.scores(stepped, batch), by_hand, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(method.frozen), frozen)  # never a parameter
