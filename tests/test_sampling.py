"""The sampler (decode/sampling.py): its loop driven by fake logits, and on a tiny model.

Frequencies are checked against the truncated softmax computed here in NumPy from the
definitions (top-k: the k largest; top-p: the smallest set of most likely tokens holding
mass >= p), the repetition penalty against hand-computed cases.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genrec_jax.decode import sampling
from genrec_jax.models import transformer
from genrec_jax.models.transformer_config import TransformerConfig

LOGITS = np.array([2.0, 1.5, 1.2, 0.3, 0.0, -0.5, -1.0, -3.0], np.float32)


def _constant_step(logits):
  """step_fn returning the same logits for every row; its state counts the calls."""
  def step_fn(tokens, calls):
    return jnp.broadcast_to(jnp.asarray(logits), (tokens.shape[0], len(logits))), (), calls + 1
  return step_fn


_LOOP = jax.jit(sampling.sample_loop, static_argnums=(0, 6))  # one compile per step_fn+config
_LOGITS_STEP = _constant_step(LOGITS)


def _run(step_fn, batch, config, prompt=None, key=0, first=None):
  prompt = np.zeros((batch, 1), np.int32) if prompt is None else np.asarray(prompt, np.int32)
  first = step_fn(jnp.zeros((batch,), jnp.int32), 0)[0] if first is None else first
  return _LOOP(step_fn, first, jnp.int32(0), prompt, prompt >= 0, jax.random.key(key), config)


def _truncated_softmax(logits, temperature=1.0, top_k=0, top_p=1.0):
  """Reference distribution, float64, from the definitions."""
  z = np.asarray(logits, np.float64) / temperature
  order = np.argsort(-z)
  keep = np.zeros(len(z), bool)
  keep[order[:top_k or len(z)]] = True
  probs = np.where(keep, np.exp(z - z.max()), 0.0)
  probs /= probs.sum()
  kept, mass = [], 0.0
  for token in order:  # most likely first, until the mass reaches top_p
    if not keep[token] or mass >= top_p:
      break
    kept.append(token)
    mass += probs[token]
  out = np.zeros(len(z))
  out[kept] = probs[kept]
  return out / out.sum()


@pytest.mark.parametrize('temperature,top_k,top_p', [
    (0.7, 3, 1.0), (1.0, 0, 0.8), (0.5, 0, 0.7)])
def test_sample_frequencies_match_the_truncated_softmax(temperature, top_k, top_p):
  config = sampling.SamplingConfig(max_new_tokens=4, temperature=temperature, top_k=top_k,
                                   top_p=top_p)
  out = _run(_LOGITS_STEP, 5000, config)
  counts = np.bincount(np.asarray(out.tokens).ravel(), minlength=len(LOGITS))
  expected = _truncated_softmax(LOGITS, temperature, top_k, top_p)
  assert np.all(counts[expected == 0] == 0)  # removed tokens are never drawn
  np.testing.assert_allclose(counts / counts.sum(), expected, atol=0.012)  # ~4 sigma at n=2e4
  assert (expected > 0).sum() >= 2  # the case truncates to a real distribution


def test_top_p_keeps_the_token_that_crosses_the_mass():
  probs = np.array([0.5, 0.3, 0.15, 0.05])
  logits = jnp.log(jnp.asarray([probs], jnp.float32))
  kept = lambda p: np.asarray(sampling.top_p_filter(logits, p)[0] > -1e29)
  np.testing.assert_array_equal(kept(0.5), [True, False, False, False])
  np.testing.assert_array_equal(kept(0.6), [True, True, False, False])
  np.testing.assert_array_equal(kept(0.81), [True, True, True, False])
  np.testing.assert_array_equal(kept(0.01), [True, False, False, False])
  np.testing.assert_array_equal(
      np.asarray(sampling.top_k_filter(jnp.asarray([[1.0, 3.0, 3.0, 2.0]]), 2)[0] > -1e29),
      [False, True, True, False])


def _hf_top_p_keep(logits, p):
  """HF's TopPLogitsWarper in NumPy: sort ascending, remove while cumsum <= 1 - p, keep the
  last."""
  order = np.argsort(logits, axis=-1)
  ascending = np.take_along_axis(logits, order, axis=-1)
  probs = np.exp(ascending - ascending.max(axis=-1, keepdims=True))
  remove = np.cumsum(probs / probs.sum(axis=-1, keepdims=True), axis=-1) <= 1 - p
  remove[:, -1] = False
  out = np.zeros_like(remove)
  np.put_along_axis(out, order, remove, axis=-1)
  return ~out


def test_top_p_bisection_keeps_what_hf_sorting_keeps():
  rng = np.random.default_rng(0)
  filtered = jax.jit(sampling.top_p_filter, static_argnums=1)
  for p in (0.3, 0.9, 0.97):
    for scale in (0.3, 3.0, 12.0):
      logits = (rng.normal(size=(64, 1000)) * scale).astype(np.float32)
      kept = np.asarray(filtered(jnp.asarray(logits), p) > -1e29)
      np.testing.assert_array_equal(kept, _hf_top_p_keep(logits.astype(np.float64), p))


def test_repetition_penalty_hand_case():
  logits = jnp.asarray([[2.0, -1.0, 0.5, -3.0]])
  seen = jnp.asarray([[True, True, False, False]])
  np.testing.assert_allclose(sampling.repetition_penalty(logits, seen, 2.0),
                             [[1.0, -2.0, 0.5, -3.0]])


def test_repetition_penalty_in_the_loop_counts_prompt_and_generated_tokens():
  # Logits [3, 2.5, 1, -1], penalty 2, prompt (3,), greedy:
  #   step 1: seen {3}       -> [3, 2.5, 1, -2]    -> 0
  #   step 2: seen {0, 3}    -> [1.5, 2.5, 1, -2]  -> 1
  #   step 3: seen {0, 1, 3} -> [1.5, 1.25, 1, -2] -> 0 (penalised once, not per occurrence)
  #   step 4: same           -> 0
  config = sampling.SamplingConfig(max_new_tokens=4, temperature=0, repetition_penalty=2.0)
  out = _run(_constant_step([3.0, 2.5, 1.0, -1.0]), 1, config, prompt=[[3]])
  assert np.asarray(out.tokens).tolist() == [[0, 1, 0, 0]]
  # Prompt padding (-1 here, masked) is not a seen token: token 0 is not penalised.
  out = _run(_constant_step([3.0, 2.5, 1.0, -1.0]), 1, config, prompt=[[-1, 3]])
  assert np.asarray(out.tokens)[0, 0] == 0


def test_eos_stops_rows_pads_them_and_ends_the_loop():
  def step_fn(tokens, calls):  # row 0 says EOS (5) on its 3rd token, row 1 on its 2nd
    logits = jnp.zeros((2, 6)).at[:, 1].set(1.0)
    eos_row = (calls + 1 == jnp.array([2, 1]))
    logits = logits.at[:, 5].set(jnp.where(eos_row, 2.0, 0.0))
    return logits, tokens.astype(jnp.float32) * 10, calls + 1
  config = sampling.SamplingConfig(max_new_tokens=6, temperature=0, eos_ids=(5, 4), pad_id=0)
  out = _run(step_fn, 2, config, first=jnp.zeros((2, 6)).at[:, 1].set(1.0))
  assert np.asarray(out.tokens).tolist() == [[1, 1, 5, 0, 0, 0], [1, 5, 0, 0, 0, 0]]
  assert np.asarray(out.lengths).tolist() == [3, 2]
  assert np.asarray(out.aux).tolist() == [[10, 10, 50, 0, 0, 0], [10, 50, 0, 0, 0, 0]]


def test_loop_ends_when_every_row_has_stopped():
  config = sampling.SamplingConfig(max_new_tokens=50, temperature=0, eos_ids=(2,))
  out = _run(_constant_step([0.0, 0.0, 1.0]), 2, config)  # EOS is the argmax at once
  assert int(out.state) == 1  # one step call (feeding the EOS), not 50
  assert np.asarray(out.lengths).tolist() == [1, 1]


def test_sampling_is_reproducible_and_varies_with_the_key():
  config = sampling.SamplingConfig(max_new_tokens=4, temperature=0.7, top_k=3)
  one, again, other = (_run(_LOGITS_STEP, 5000, config, key=k) for k in (0, 0, 1))
  np.testing.assert_array_equal(one.tokens, again.tokens)
  assert not np.array_equal(one.tokens, other.tokens)


def test_greedy_is_argmax_and_config_is_validated():
  out = _run(_LOGITS_STEP, 3, sampling.SamplingConfig(max_new_tokens=2, temperature=0))
  assert np.all(np.asarray(out.tokens) == 0)
  for bad in (dict(max_new_tokens=0), dict(temperature=-1.0), dict(top_k=-1),
              dict(top_p=0.0), dict(top_p=1.5), dict(repetition_penalty=0.0)):
    with pytest.raises(ValueError, match=next(iter(bad))):
      sampling.SamplingConfig(**bad)


# ---------------------------------------------------------------------------
# On a tiny Transformer: a left-padded batch equals each prompt alone.
# ---------------------------------------------------------------------------

TINY = TransformerConfig(vocab_size=50, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         tie_word_embeddings=True)


@pytest.fixture(scope='module')
def tiny():
  model = transformer.Transformer(TINY)
  params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 1), jnp.int32))['params']
  params = jax.tree.map(lambda x: x * 8 if x.ndim == 2 else x, params)  # peaked logits
  return model, params


def test_left_padded_batch_equals_each_prompt_run_alone(tiny):
  """Greedy tokens with the repetition penalty, and hidden states, of a left-padded batch
  equal what a plain forward of each unpadded prompt + its continuation gives."""
  model, params = tiny
  short, long, steps, penalty = [3, 7], [11, 4, 9, 20, 1], 5, 1.3
  config = sampling.SamplingConfig(max_new_tokens=steps, temperature=0,
                                   repetition_penalty=penalty)
  tokens = np.asarray([[0, 0, 0] + short, long], np.int32)
  mask = np.asarray([[False] * 3 + [True] * 2, [True] * 5])
  batch = sampling.generate(model, params, tokens, mask, jax.random.key(0), config, True)
  # The reference: each sequence on its own (right-padded in one call: causal attention and
  # the mask keep its real tokens from seeing the padding), positions 0, 1, ...
  sequences = [p + np.asarray(t).tolist() for p, t in zip((short, long), batch.tokens)]
  padded = np.zeros((2, 10), np.int32)
  padded[0, :7], padded[1] = sequences
  forward = jax.jit(lambda p, x, m: model.apply({'params': p}, x, mask=m, return_hidden=True))
  out = forward(params, padded, np.arange(10) < np.array([[7], [10]]))
  for row, prompt in enumerate((short, long)):
    seq, start = sequences[row], len(prompt)
    for n in range(steps):  # HF's penalty over the tokens so far, then argmax
      logits = np.asarray(out.logits[row, start + n - 1], np.float64)
      seen = list(set(seq[:start + n]))
      logits[seen] = np.where(logits[seen] > 0, logits[seen] / penalty, logits[seen] * penalty)
      assert seq[start + n] == int(np.argmax(logits)), (row, n)
    np.testing.assert_allclose(batch.hidden[row], out.hidden[row, start:start + steps],
                               atol=2e-5)
    np.testing.assert_allclose(batch.prompt_hidden_mean[row],
                               np.asarray(out.hidden[row, :start]).mean(axis=0), atol=2e-5)
  assert not np.array_equal(batch.tokens[0], batch.tokens[1])
