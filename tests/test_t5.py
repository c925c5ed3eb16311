"""Tests for genrec_jax.models.t5 against an independent NumPy reference written here.

The reference has its own bucketing, attention, RMSNorm and feed-forward, runs in float64
and runs the encoder on each row's real tokens only (no padding, no masks), so masking,
bias sharing and parameter layout bugs in the Flax model all show up as logit mismatches.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genrec_jax.decode.beam_search import beam_search
from genrec_jax.models import t5
from genrec_jax.tokenize.trie import build_trie

TOL = dict(rtol=1e-4, atol=1e-4)
START = 0  # decoder start token
VOCAB = 29

# Tiny, with N * H != D, and few buckets / a short max_distance so that the logarithmic
# buckets are exercised by sequences of length <= 9. Dropout is on: every eval-mode
# comparison below thereby also checks that eval mode applies none.
TINY = dict(vocab_size=VOCAB, d_model=16, num_heads=3, head_dim=5, d_ff=24,
            num_encoder_layers=2, num_decoder_layers=2, dropout=0.3,
            relative_attention_num_buckets=8, relative_attention_max_distance=8)

# Encoder rows: full, right-padded (garbage ids at padding) and left-padded.
ENCODER_TOKENS = np.array([[3, 7, 1, 9, 4, 4, 12, 8, 2],
                           [5, 11, 6, 2, 14, -1, 27, 0, 3],
                           [9, 9, 9, 21, 4, 18, 7, 1, 13]], np.int32)
ENCODER_MASK = np.array([[1] * 9, [1] * 5 + [0] * 4, [0] * 3 + [1] * 6], bool)
DECODER_TOKENS = np.array([[START, 4, 8, 15, 16, 23],
                           [START, 1, 1, 2, 3, 5],
                           [START, 28, 0, 7, 13, 6]], np.int32)

_prefill = jax.jit(t5.prefill, static_argnums=(0, 4, 5))
_decode_step = jax.jit(t5.decode_step, static_argnums=0)


@functools.partial(jax.jit, static_argnums=(0, 5))
def _forward(model, params, encoder_tokens, encoder_mask, decoder_tokens, train=False,
             rng=None):
  rngs = None if rng is None else {'dropout': rng}
  return model.apply({'params': params}, encoder_tokens, encoder_mask, decoder_tokens,
                     train, rngs=rngs)


def _model_and_params(seed=0, **overrides):
  """A tiny model with random params drawn in NumPy (shapes from t5.abstract_params).

  Norm scales are not ones and every table is random, so a misplaced param shows up; NumPy
  draws avoid compiling one XLA program per param shape.
  """
  model = t5.T5(t5.T5Config(**{**TINY, **overrides}))
  rng = np.random.default_rng(seed)

  def draw(path, shape):
    name = jax.tree_util.keystr(path)
    if 'norm' in name:
      return 1.0 + 0.2 * rng.standard_normal(shape.shape)
    if 'shared' in name or 'relative_attention_bias' in name:
      return rng.standard_normal(shape.shape)
    fan_in = math.prod(shape.shape[:-2 if 'query' in name or 'key' in name
                                      or 'value' in name else -1])
    return rng.standard_normal(shape.shape) * fan_in**-0.5

  params = jax.tree_util.tree_map_with_path(draw, t5.abstract_params(model))
  return model, jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)


# ---------------------------------------------------------------------------
# NumPy reference (float64).
# ---------------------------------------------------------------------------


def ref_bucket(relative_position, bidirectional, num_buckets, max_distance):
  """T5 bucketing of one int relative position (key - query), in plain Python."""
  bucket = 0
  if bidirectional:
    num_buckets //= 2
    if relative_position > 0:
      bucket += num_buckets
    distance = abs(relative_position)
  else:
    distance = max(-relative_position, 0)
  max_exact = num_buckets // 2
  if distance < max_exact:
    return bucket + distance
  scaled = math.log(distance / max_exact) / math.log(max_distance / max_exact)
  return bucket + min(max_exact + int(scaled * (num_buckets - max_exact)), num_buckets - 1)


def ref_weights(params, config):
  """Flax params -> flat dict of 2-D float64 matrices (x @ W convention)."""
  f64 = lambda a: np.asarray(a, np.float64)
  inner = config.num_heads * config.head_dim

  def attention(p):
    return {'q': f64(p['query']['kernel']).reshape(config.d_model, inner),
            'k': f64(p['key']['kernel']).reshape(config.d_model, inner),
            'v': f64(p['value']['kernel']).reshape(config.d_model, inner),
            'o': f64(p['out']['kernel']).reshape(inner, config.d_model)}

  def feed_forward(p):
    return {name: f64(p[name]['kernel']) for name in ('wi', 'wi_0', 'wi_1', 'wo') if name in p}

  weights = {'embedding': f64(params['shared']['embedding'])}
  if not config.tie_embeddings:
    weights['lm_head'] = f64(params['lm_head']['kernel'])
  for stack, num_layers in (('encoder', config.num_encoder_layers),
                            ('decoder', config.num_decoder_layers)):
    p = params[stack]
    weights[f'{stack}.bias_table'] = f64(p['layers_0']['relative_attention_bias']['embedding'])
    weights[f'{stack}.final_norm'] = f64(p['final_norm']['scale'])
    for i in range(num_layers):
      layer = p[f'layers_{i}']
      prefix = f'{stack}.{i}'
      weights[f'{prefix}.self_attention'] = attention(layer['self_attention'])
      weights[f'{prefix}.self_attention_norm'] = f64(layer['self_attention_norm']['scale'])
      weights[f'{prefix}.feed_forward'] = feed_forward(layer['feed_forward'])
      weights[f'{prefix}.feed_forward_norm'] = f64(layer['feed_forward_norm']['scale'])
      if stack == 'decoder':
        weights[f'{prefix}.cross_attention'] = attention(layer['cross_attention'])
        weights[f'{prefix}.cross_attention_norm'] = f64(layer['cross_attention_norm']['scale'])
  return weights


def ref_rms_norm(x, scale, eps):
  return x / np.sqrt(np.mean(x**2, axis=-1, keepdims=True) + eps) * scale


def ref_attention(queries, keys, w, num_heads, bias=None, causal=False):
  """queries [T, D], keys [S, D] -> [T, D]; bias [N, T, S]; no 1/sqrt(H) (T5)."""
  t, s = len(queries), len(keys)
  q = (queries @ w['q']).reshape(t, num_heads, -1)
  k = (keys @ w['k']).reshape(s, num_heads, -1)
  v = (keys @ w['v']).reshape(s, num_heads, -1)
  out = np.zeros_like(q)
  for n in range(num_heads):
    scores = q[:, n] @ k[:, n].T + (0.0 if bias is None else bias[n])  # [T, S]
    if causal:
      scores = np.where(np.tril(np.ones((t, s), bool)), scores, -np.inf)
    probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
    out[:, n] = (probs / probs.sum(axis=-1, keepdims=True)) @ v[:, n]
  return out.reshape(t, -1) @ w['o']


def ref_feed_forward(x, w, kind):
  if kind == 'relu':
    hidden = np.maximum(x @ w['wi'], 0.0)
  else:
    gate = x @ w['wi_0']
    gelu = 0.5 * gate * (1 + np.tanh(np.sqrt(2 / np.pi) * (gate + 0.044715 * gate**3)))
    hidden = gelu * (x @ w['wi_1'])
  return hidden @ w['wo']


def ref_bias(table, length, bidirectional, config):
  """[N, T, T] bias for positions 0..length-1 from a table [R, N]."""
  buckets = np.array([[ref_bucket(j - i, bidirectional, config.relative_attention_num_buckets,
                                  config.relative_attention_max_distance)
                       for j in range(length)] for i in range(length)])
  return np.transpose(table[buckets], (2, 0, 1))


def ref_logits(weights, config, encoder_tokens, decoder_tokens):
  """Logits [T, V] for ONE example: encoder_tokens are its real tokens only."""
  eps, heads = config.layer_norm_epsilon, config.num_heads
  x = weights['embedding'][encoder_tokens]
  bias = ref_bias(weights['encoder.bias_table'], len(encoder_tokens), True, config)
  for i in range(config.num_encoder_layers):
    h = ref_rms_norm(x, weights[f'encoder.{i}.self_attention_norm'], eps)
    x = x + ref_attention(h, h, weights[f'encoder.{i}.self_attention'], heads, bias)
    h = ref_rms_norm(x, weights[f'encoder.{i}.feed_forward_norm'], eps)
    x = x + ref_feed_forward(h, weights[f'encoder.{i}.feed_forward'], config.feed_forward)
  encoded = ref_rms_norm(x, weights['encoder.final_norm'], eps)

  y = weights['embedding'][decoder_tokens]
  bias = ref_bias(weights['decoder.bias_table'], len(decoder_tokens), False, config)
  for i in range(config.num_decoder_layers):
    h = ref_rms_norm(y, weights[f'decoder.{i}.self_attention_norm'], eps)
    y = y + ref_attention(h, h, weights[f'decoder.{i}.self_attention'], heads, bias, True)
    h = ref_rms_norm(y, weights[f'decoder.{i}.cross_attention_norm'], eps)
    y = y + ref_attention(h, encoded, weights[f'decoder.{i}.cross_attention'], heads)
    h = ref_rms_norm(y, weights[f'decoder.{i}.feed_forward_norm'], eps)
    y = y + ref_feed_forward(h, weights[f'decoder.{i}.feed_forward'], config.feed_forward)
  y = ref_rms_norm(y, weights['decoder.final_norm'], eps)
  if config.tie_embeddings:
    return y @ weights['embedding'].T * config.d_model**-0.5
  return y @ weights['lm_head']


# ---------------------------------------------------------------------------
# Tests.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('feed_forward,tie_embeddings', [('relu', True), ('gated-gelu', False)])
def test_matches_numpy_reference(feed_forward, tie_embeddings):
  model, params = _model_and_params(feed_forward=feed_forward, tie_embeddings=tie_embeddings)
  logits = np.asarray(_forward(model, params, ENCODER_TOKENS, ENCODER_MASK, DECODER_TOKENS))
  assert logits.shape == (*DECODER_TOKENS.shape, VOCAB)
  weights = ref_weights(params, model.config)
  for row in range(len(ENCODER_TOKENS)):
    real_tokens = ENCODER_TOKENS[row][ENCODER_MASK[row]]
    expected = ref_logits(weights, model.config, real_tokens, DECODER_TOKENS[row])
    np.testing.assert_allclose(logits[row], expected, **TOL, err_msg=f'row {row}')


def test_relative_position_buckets_by_hand():
  # 32 buckets, max distance 128. Bidirectional: 16 per direction, distances 0..7 exact,
  # then 8 + floor(log(d / 8) / log(16) * 8); keys after the query add 16.
  bidirectional = {0: 0, -1: 1, -7: 7, -8: 8, -12: 9, -20: 10, -40: 12, -100: 15,
                   -1000: 15, 1: 17, 5: 21, 20: 26, 1000: 31}
  # Causal: distances 0..15 exact, then 16 + floor(log(d / 16) / log(8) * 16); the future
  # is bucket 0.
  causal = {0: 0, -1: 1, -15: 15, -16: 16, -40: 23, -100: 30, -127: 31, -500: 31, 1: 0,
            5: 0}
  for is_bidirectional, expected in ((True, bidirectional), (False, causal)):
    relative = np.array(list(expected))
    buckets = t5.relative_position_bucket(relative, bidirectional=is_bidirectional,
                                          num_buckets=32, max_distance=128)
    assert buckets.dtype == jnp.int32
    np.testing.assert_array_equal(buckets, list(expected.values()),
                                  err_msg=f'bidirectional={is_bidirectional}')
    # The test's own bucketing agrees too (it is what the reference forward uses).
    assert [ref_bucket(int(r), is_bidirectional, 32, 128) for r in relative] == list(
        expected.values())


def test_cached_decoding_matches_teacher_forcing():
  model, params = _model_and_params(seed=3)
  teacher = np.asarray(_forward(model, params, ENCODER_TOKENS, ENCODER_MASK, DECODER_TOKENS))
  length = DECODER_TOKENS.shape[1]
  logits, cache = _prefill(model, params, ENCODER_TOKENS, ENCODER_MASK, length, START)
  assert all(leaf.shape[0] == len(ENCODER_TOKENS) for leaf in jax.tree.leaves(cache))
  np.testing.assert_allclose(logits, teacher[:, 0], **TOL)
  for t in range(1, length):
    logits, cache = _decode_step(model, params, jnp.asarray(DECODER_TOKENS[:, t]), cache)
    np.testing.assert_allclose(logits, teacher[:, t], **TOL, err_msg=f'step {t}')
  np.testing.assert_array_equal(cache['index'], length)


def test_encoder_is_reusable_on_its_own():
  model, params = _model_and_params(seed=4)
  encoded = model.apply({'params': params}, ENCODER_TOKENS, ENCODER_MASK, method=t5.T5.encode)
  embedded = jnp.take(params['shared']['embedding'], np.where(ENCODER_MASK, ENCODER_TOKENS, 0),
                      axis=0)
  standalone = t5.Encoder(model.config).apply({'params': params['encoder']}, embedded,
                                              ENCODER_MASK)
  np.testing.assert_allclose(standalone, encoded, rtol=1e-6, atol=1e-6)


# Items: 'head' SIDs [a, b, EOS] and 'tail' SIDs [a, b, c, d] (variable length, prefix-free),
# level l's code c is token 1 + 4 * l + c.
EOS = 17
SIDS = [np.array(s) for s in ([1, 5, EOS], [2, 6, EOS], [1, 6, EOS], [1, 5, 9, 13],
                              [1, 5, 10, 14], [2, 7, 11, 16], [4, 8, 12, 13], [3, 5, 9, 15])]


@functools.partial(jax.jit, static_argnums=(0, 5))
def _search(model, params, encoder_tokens, encoder_mask, trie, beam_size):
  first_logits, cache = t5.prefill(model, params, encoder_tokens, encoder_mask, trie.max_len,
                                   START)
  step_fn = lambda tokens, cache, step: t5.decode_step(model, params, tokens, cache)
  return beam_search(step_fn, cache, trie, batch_size=encoder_tokens.shape[0],
                     beam_size=beam_size, first_logits=first_logits)


def _brute_force_log_probs(model, params, encoder_tokens, encoder_mask):
  """[B, I] float64 log-probability of every item's SID, teacher-forced."""
  num_users, num_items = len(encoder_tokens), len(SIDS)
  max_len = max(len(s) for s in SIDS)
  decoder = np.zeros((num_items, max_len + 1), np.int32)
  for i, sid in enumerate(SIDS):
    decoder[i, 1:len(sid) + 1] = sid  # START first; trailing zeros cannot matter (causal)
  logits = _forward(model, params, np.repeat(encoder_tokens, num_items, axis=0),
                    np.repeat(encoder_mask, num_items, axis=0), np.tile(decoder, (num_users, 1)))
  log_probs = jax.nn.log_softmax(np.asarray(logits, np.float64), axis=-1)
  log_probs = np.asarray(log_probs).reshape(num_users, num_items, max_len + 1, VOCAB)
  out = np.zeros((num_users, num_items))
  for i, sid in enumerate(SIDS):
    out[:, i] = sum(log_probs[:, i, t, token] for t, token in enumerate(sid))
  return out


@pytest.mark.parametrize('beam_size', [3, len(SIDS)])
def test_beam_search_with_t5(beam_size):
  model, params = _model_and_params(seed=5)
  trie = jax.device_put(build_trie(SIDS))
  encoder_tokens, encoder_mask = ENCODER_TOKENS[1:], ENCODER_MASK[1:]  # 2 users, padded
  items, scores = map(np.asarray, _search(model, params, encoder_tokens, encoder_mask, trie,
                                          beam_size))
  assert items.shape == scores.shape == (2, beam_size)
  assert ((items >= 0) & (items < len(SIDS))).all()  # every result is a trie item
  brute = _brute_force_log_probs(model, params, encoder_tokens, encoder_mask)
  for user in range(2):
    assert len(set(items[user])) == beam_size
    # The scores are the items' sequence log-probabilities under the model.
    np.testing.assert_allclose(scores[user], brute[user, items[user]], **TOL)
    if beam_size >= len(SIDS):  # the beam holds every item: exact ranking
      np.testing.assert_array_equal(items[user], np.argsort(-brute[user]))


def test_dropout_only_in_train_mode():
  model, params = _model_and_params(seed=6)
  args = (model, params, ENCODER_TOKENS, ENCODER_MASK, DECODER_TOKENS)
  # rbg keys: XLA:CPU compiles ~20 threefry dropout masks about 3x slower.
  key = functools.partial(jax.random.key, impl='rbg')
  train_a = np.asarray(_forward(*args, True, key(1)))
  train_b = np.asarray(_forward(*args, True, key(2)))
  assert not np.allclose(train_a, train_b)
  np.testing.assert_array_equal(train_a, _forward(*args, True, key(1)))
  evaluated = np.asarray(_forward(*args))
  np.testing.assert_array_equal(evaluated, _forward(*args))
  assert not np.allclose(evaluated, train_a)


def test_tiger_config_param_shapes_and_logical_axes():
  model = t5.T5(t5.T5Config(vocab_size=1030))  # defaults: TIGER's architecture
  shapes = jax.tree.map(lambda x: x.shape, t5.abstract_params(model))
  assert 'lm_head' not in shapes  # tied
  assert shapes['shared']['embedding'] == (1030, 128)
  assert shapes['encoder']['layers_0']['relative_attention_bias']['embedding'] == (32, 6)
  assert 'relative_attention_bias' not in shapes['decoder']['layers_3']  # shared from layer 0
  layer = shapes['decoder']['layers_3']
  assert layer['cross_attention']['query']['kernel'] == (128, 6, 64)
  assert layer['cross_attention']['out']['kernel'] == (6, 64, 128)
  assert layer['feed_forward']['wi']['kernel'] == (128, 1024)
  assert set(shapes['encoder']) == {f'layers_{i}' for i in range(4)} | {'final_norm'}
  specs = jax.tree.leaves(t5.param_logical_axes(model),
                          is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
  assert len(specs) == len(jax.tree.leaves(shapes, is_leaf=lambda x: isinstance(x, tuple)))
  allowed = {None, 'embed', 'mlp', 'heads', 'kv', 'vocab'}
  assert all(set(spec) <= allowed and any(spec) for spec in specs)
