"""Tests for the dense item trie and the trie-constrained beam search.

The beam search is checked against a slow plain-Python reference written here (it does not
call the library, so a shared bug cannot hide) and, when the beam holds every item, against
a brute-force enumeration of every item's log-probability.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genrec_jax.decode.beam_search import beam_search
from genrec_jax.decode.item_topk import MASKED
from genrec_jax.tokenize.trie import Trie
from genrec_jax.tokenize.trie import build_trie

VOCAB = 120
CODEBOOK = 6  # codes per SID level
START = 0  # start token, never part of a SID
EOS = 1 + 4 * CODEBOOK  # after the four level blocks
HISTORY = 8  # fed tokens the fake model remembers (>= longest SID + start token)
# Tokens no SID ever uses: the adversarial model pushes its mass there.
UNUSED_TOKENS = np.array([t for t in range(VOCAB) if t == START or t > EOS])


# ---------------------------------------------------------------------------
# Random SIDs: level l's code c is token 1 + l * CODEBOOK + c.
# ---------------------------------------------------------------------------


def _codes_to_tokens(codes):
  return np.array([1 + level * CODEBOOK + c for level, c in enumerate(codes)], np.int64)


def fixed_length_sids(rng, num_items, length=3):
  """num_items distinct SIDs of `length` levels (dense enough to share prefixes)."""
  all_codes = rng.permutation(CODEBOOK**length)[:num_items]
  return [_codes_to_tokens(np.unravel_index(i, (CODEBOOK,) * length)) for i in all_codes]


def skt_like_sids(rng, num_head, num_tail, head_len=2, tail_len=2):
  """Ghost SKT-like SIDs: head = head_len codes + EOS; tail = head_len + tail_len codes.

  Head and tail items draw their first levels from the same code blocks, so they share
  prefixes and finish at different steps.
  """
  head_codes = rng.permutation(CODEBOOK**head_len)[:num_head]
  heads = [np.append(_codes_to_tokens(np.unravel_index(i, (CODEBOOK,) * head_len)), EOS)
           for i in head_codes]
  full = head_len + tail_len
  tail_codes = rng.permutation(CODEBOOK**full)[:num_tail]
  tails = [_codes_to_tokens(np.unravel_index(i, (CODEBOOK,) * full)) for i in tail_codes]
  return heads + tails


def make_sids(kind, seed):
  rng = np.random.default_rng(seed)
  if kind == 'fixed':
    return fixed_length_sids(rng, 40)
  if kind == 'variable':
    return skt_like_sids(rng, 12, 30)
  if kind == 'single_level':
    return fixed_length_sids(rng, 5, length=1)
  if kind == 'sparse':  # fewer items than most beams
    return skt_like_sids(rng, 2, 3)
  raise ValueError(kind)


# ---------------------------------------------------------------------------
# Fake model: deterministic pseudo-random logits from a running hash of every token fed so
# far, carried in the cache (one row per beam). Integer hashing is identical in numpy and
# jax, and the float conversion is exact, so both sides see bit-identical logits. If the
# library did not gather the cache with the parent beams, the logits would differ.
# ---------------------------------------------------------------------------

_MULT_A = 0x9E3779B1
_MULT_B = 0x85EBCA77


def _mix(xp, h, x):
  h = (h ^ x) * xp.uint32(_MULT_A)
  h = h ^ (h >> 15)
  h = h * xp.uint32(_MULT_B)
  return h ^ (h >> 13)


def _logits_from_state(xp, hashes, history, bias):
  """hashes [R] uint32, history [R, HISTORY] int32 -> logits [R, VOCAB] float32."""
  weights = xp.arange(1, HISTORY + 1, dtype=xp.uint32)
  history_code = (history.astype(xp.uint32) * weights).sum(axis=1).astype(xp.uint32)
  row_hash = _mix(xp, hashes, history_code)  # [R]
  bits = _mix(xp, row_hash[:, None], xp.arange(VOCAB, dtype=xp.uint32)[None, :])  # [R, V]
  # 24 random bits scaled by a power of two: exact in float32 on both sides.
  uniform = (bits >> 8).astype(xp.float32) * xp.float32(2.0**-24)
  return uniform * xp.float32(8.0) + bias


def _feed(xp, tokens, cache, step):
  """One model step on numpy or jax arrays: returns (new hashes, new history)."""
  step_code = xp.asarray(step).astype(xp.uint32) + xp.uint32(1)
  hashes = _mix(xp, _mix(xp, cache['hash'], tokens.astype(xp.uint32)), step_code)
  if xp is np:
    history = cache['history'].copy()
    history[:, step] = tokens
  else:
    history = cache['history'].at[:, step].set(tokens)
  return hashes, history


def _zero_bias(xp):
  return xp.zeros((VOCAB,), xp.float32)


def _adversarial_bias(xp):
  """+50 on tokens no SID uses: almost all probability mass is on invalid tokens."""
  bias = np.zeros((VOCAB,), np.float32)
  bias[UNUSED_TOKENS] = 50.0
  return xp.asarray(bias)


def fake_tokens_to_logits(tokens, cache, step, bias_fn=_zero_bias, temperature=1.0):
  """The library-facing fake model (jax)."""
  hashes, history = _feed(jnp, tokens, cache, step)
  logits = _logits_from_state(jnp, hashes, history, bias_fn(jnp)) * temperature
  return logits, {'hash': hashes, 'history': history}


adversarial_tokens_to_logits = functools.partial(fake_tokens_to_logits,
                                                 bias_fn=_adversarial_bias)


def np_tokens_to_logits(tokens, cache, step, bias_fn=_zero_bias, temperature=1.0):
  """The same fake model in numpy, for the references."""
  hashes, history = _feed(np, np.asarray(tokens, np.int32), cache, step)
  logits = _logits_from_state(np, hashes, history, bias_fn(np)) * np.float32(temperature)
  return logits, {'hash': hashes, 'history': history}


def user_caches(batch_size, seed):
  """Per-user caches after a (pretend) prompt prefill: leaves with leading axis B."""
  users = np.arange(batch_size, dtype=np.uint32)
  hashes = _mix(np, np.full(batch_size, seed, np.uint32), users)
  return {'hash': hashes, 'history': np.zeros((batch_size, HISTORY), np.int32)}


def prefill_logits(cache, bias_fn=_zero_bias):
  """[B, V] first-token logits from the per-user caches (numpy)."""
  return _logits_from_state(np, cache['hash'], cache['history'], bias_fn(np))


def _row(cache, b):
  return jax.tree.map(lambda x: x[b:b + 1], cache)


def _log_softmax64(logits):
  logits = np.asarray(logits, np.float64).reshape(-1)
  shifted = logits - logits.max()
  return shifted - math.log(np.exp(shifted).sum())


# ---------------------------------------------------------------------------
# References (plain Python, one user at a time).
# ---------------------------------------------------------------------------


def reference_beam_search(sids, user_cache, beam_size, use_first_logits=True,
                          np_model=None, bias_fn=_zero_bias):
  """Slow beam search with the library's pooling rules, for one user.

  Alive beams are the best `beam_size` non-completing candidates; completing candidates
  are merged into the finished pool (old entries first, stable sort, best beam_size).
  Candidates are ordered by (beam, token) before the stable sorts, as in the library.
  """
  if np_model is None:
    np_model = functools.partial(np_tokens_to_logits, bias_fn=bias_fn)
  seq_to_item = {tuple(int(x) for x in s): i for i, s in enumerate(sids)}
  next_tokens = {}
  for seq in seq_to_item:
    for t in range(len(seq)):
      next_tokens.setdefault(seq[:t], set()).add(seq[t])
  next_tokens = {prefix: sorted(tokens) for prefix, tokens in next_tokens.items()}
  max_len = max(len(seq) for seq in seq_to_item)

  if use_first_logits:
    first_logits, cache, offset = prefill_logits(user_cache, bias_fn), user_cache, 0
  else:
    first_logits, cache = np_model([START], user_cache, 0)
    offset = 1
  # Alive beam: (score, prefix, cache after feeding all but its last token, logits or None).
  alive = [(0.0, (), cache, first_logits)]
  finished = []  # (score, item)
  for step in range(max_len):
    done, partial = [], []
    for score, prefix, cache, logits in alive:
      if logits is None:
        logits, cache = np_model([prefix[-1]], cache, step - 1 + offset)
      log_probs = _log_softmax64(logits)
      for token in next_tokens[prefix]:
        new_prefix, new_score = prefix + (token,), score + log_probs[token]
        if new_prefix in seq_to_item:
          done.append((new_score, seq_to_item[new_prefix]))
        else:
          partial.append((new_score, new_prefix, cache, None))
    finished = sorted(finished + done, key=lambda c: -c[0])[:beam_size]
    alive = sorted(partial, key=lambda c: -c[0])[:beam_size]
  items = [item for _, item in finished] + [-1] * (beam_size - len(finished))
  scores = [score for score, _ in finished] + [MASKED] * (beam_size - len(finished))
  return np.array(items), np.array(scores)


def brute_force_log_probs(sids, user_cache, bias_fn=_zero_bias):
  """Log-probability of every item's full sequence for one user (first-logits mode)."""
  out = []
  for seq in sids:
    logits, cache, total = prefill_logits(user_cache, bias_fn), user_cache, 0.0
    for step, token in enumerate(seq):
      if step:
        logits, cache = np_tokens_to_logits([seq[step - 1]], cache, step - 1,
                                            bias_fn=bias_fn)
      total += _log_softmax64(logits)[token]
    out.append(total)
  return np.array(out)


def run_beam_search(sids, batch_size, beam_size, seed, use_first_logits=True,
                    tokens_to_logits=fake_tokens_to_logits, bias_fn=_zero_bias, **kwargs):
  trie = jax.device_put(build_trie(sids))
  caches = user_caches(batch_size, seed)
  first = jnp.asarray(prefill_logits(caches, bias_fn)) if use_first_logits else None
  items, scores = beam_search(tokens_to_logits, caches, trie, batch_size=batch_size,
                              beam_size=beam_size, first_logits=first, **kwargs)
  return np.asarray(items), np.asarray(scores), caches


# ---------------------------------------------------------------------------
# Trie.
# ---------------------------------------------------------------------------


def _as_set(pairs):
  return {(int(item), tuple(int(t) for t in tokens)) for item, tokens in pairs}


@pytest.mark.parametrize('kind', ['fixed', 'variable', 'single_level', 'sparse'])
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_trie_accepts_exactly_the_item_sequences(kind, seed):
  sids = make_sids(kind, seed)
  rng = np.random.default_rng(seed + 100)
  item_ids = rng.permutation(1000)[:len(sids)]
  trie = build_trie(sids, item_ids=item_ids)
  assert trie.num_items == len(sids)
  assert trie.max_len == max(len(s) for s in sids)
  assert _as_set(trie.to_sequences()) == _as_set(zip(item_ids, sids))
  for item, seq in zip(item_ids, sids):
    assert trie.contains(seq) and trie.item_of(seq) == item
    for cut in range(1, len(seq)):  # proper prefixes are not items
      assert not trie.contains(seq[:cut]) and trie.item_of(seq[:cut]) == -1
    assert not trie.contains(np.append(seq, seq[-1]))
  known = {tuple(int(t) for t in s) for s in sids}
  for _ in range(200):
    seq = sids[rng.integers(len(sids))].copy()
    seq[rng.integers(len(seq))] = rng.integers(VOCAB)
    assert trie.contains(seq) == (tuple(int(t) for t in seq) in known)


def test_trie_layout():
  sids = make_sids('variable', 3)
  trie = build_trie(sids)
  step_tokens, children = np.asarray(trie.step_tokens), np.asarray(trie.children)
  assert step_tokens.dtype == np.int32 and children.dtype == np.int32
  assert step_tokens.shape == (trie.max_len, children.shape[1])
  for t in range(trie.max_len):
    used = sorted({int(s[t]) for s in sids if len(s) > t})
    assert step_tokens[t, :len(used)].tolist() == used  # ascending, then valid padding
    assert set(step_tokens[t].tolist()) == set(used)
  # One row per distinct proper prefix, each non-root node with exactly one parent slot.
  prefixes = {tuple(s[:t]) for s in sids for t in range(len(s))}
  assert children.shape[0] == len(prefixes)
  assert sorted(children[children >= 0].tolist()) == list(range(1, len(prefixes)))
  assert sorted((-children[children < -1] - 2).tolist()) == list(range(len(sids)))
  # The same trie from a padded [I, T] array.
  padded = np.full((len(sids), trie.max_len), -1)
  for i, s in enumerate(sids):
    padded[i, :len(s)] = s
  other = build_trie(padded)
  np.testing.assert_array_equal(np.asarray(other.step_tokens), step_tokens)
  np.testing.assert_array_equal(np.asarray(other.children), children)
  # A pytree: arrays are leaves, ints are static.
  leaves, treedef = jax.tree.flatten(trie)
  assert len(leaves) == 2
  rebuilt = jax.tree.unflatten(treedef, leaves)
  assert isinstance(rebuilt, Trie) and rebuilt.max_len == trie.max_len


@pytest.mark.parametrize('sids, match', [
    ([[3, 4, 5], [3, 4, 6], [3, 4, 5]], 'same semantic ID.*dedup'),
    ([[3, 4], [3, 4, 6]], 'prefix-free'),
    ([[3, 4, 6], [7], [3, 4]], 'prefix-free'),
    ([[3, 4], []], 'empty'),
    ([], 'no items'),
    (np.array([[3, -1, 4]]), 'padding before a token'),
    ([[3, -5]], 'negative token'),
])
def test_trie_rejects_bad_input(sids, match):
  if isinstance(sids, list):
    sids = [np.asarray(s, np.int64) for s in sids]
  with pytest.raises(ValueError, match=match):
    build_trie(sids)


def test_trie_rejects_bad_item_ids():
  sids = [np.array([1, 2]), np.array([1, 3])]
  with pytest.raises(ValueError, match='appears more than once'):
    build_trie(sids, item_ids=[4, 4])
  with pytest.raises(ValueError, match='item_ids'):
    build_trie(sids, item_ids=[0, -1])
  with pytest.raises(ValueError, match='item_ids'):
    build_trie(sids, item_ids=[0])


def test_trie_error_names_the_items():
  sids = [np.array([1, 2, 3]), np.array([1, 2, 4]), np.array([1, 2, 3])]
  with pytest.raises(ValueError, match=r'items 7 and 9 .*\[1, 2, 3\]'):
    build_trie(sids, item_ids=[7, 8, 9])


# ---------------------------------------------------------------------------
# Beam search.
# ---------------------------------------------------------------------------


def test_fake_model_depends_on_the_whole_prefix():
  # Otherwise a beam search that forgot to gather the cache could still pass.
  cache = user_caches(1, seed=5)
  logits = {}
  for first in (2, 3):
    _, c = np_tokens_to_logits([first], cache, 0)
    logits[first], _ = np_tokens_to_logits([9], c, 1)
  assert not np.allclose(logits[2], logits[3])
  jax_logits, _ = fake_tokens_to_logits(jnp.array([2]), jax.tree.map(jnp.asarray, cache), 0)
  np_logits, _ = np_tokens_to_logits([2], cache, 0)
  np.testing.assert_array_equal(np.asarray(jax_logits), np_logits)  # bit-identical


@pytest.mark.parametrize('kind, batch_size, beam_size, seed, use_first_logits', [
    ('fixed', 3, 4, 0, True),
    ('fixed', 2, 1, 1, True),
    ('fixed', 1, 7, 2, False),
    ('variable', 3, 4, 3, True),
    ('variable', 2, 6, 4, False),
    ('variable', 4, 2, 5, True),
    ('single_level', 2, 3, 6, True),
    ('sparse', 2, 8, 7, True),
    ('sparse', 1, 3, 8, False),
])
def test_matches_python_reference(kind, batch_size, beam_size, seed, use_first_logits):
  sids = make_sids(kind, seed)
  items, scores, caches = run_beam_search(sids, batch_size, beam_size, seed,
                                          use_first_logits=use_first_logits)
  assert items.shape == scores.shape == (batch_size, beam_size)
  assert items.dtype == np.int32 and scores.dtype == np.float32
  for b in range(batch_size):
    ref_items, ref_scores = reference_beam_search(sids, _row(caches, b), beam_size,
                                                  use_first_logits=use_first_logits)
    np.testing.assert_array_equal(items[b], ref_items)
    np.testing.assert_allclose(scores[b], ref_scores, rtol=1e-5, atol=1e-4)


def test_early_exit_does_not_change_results():
  sids = make_sids('variable', 9)
  results = [run_beam_search(sids, 4, 3, seed=9, early_exit=flag)[:2] for flag in (True, False)]
  np.testing.assert_array_equal(results[0][0], results[1][0])
  np.testing.assert_array_equal(results[0][1], results[1][1])


def _uniform_tokens_to_logits(tokens, cache, step, calls):
  jax.debug.callback(lambda: calls.append(1), ordered=True)
  return jnp.zeros((tokens.shape[0], VOCAB), jnp.float32), cache


def test_early_exit_stops_when_nothing_can_change():
  # Uniform logits: head items (2 codes + EOS) finish at step 2 with the same score as every
  # tail prefix, so once K head items are finished no tail item can enter the pool. Ties go
  # to the lowest slot, so the beams follow code 0 and meet the heads (0, c, EOS).
  heads = [np.append(_codes_to_tokens([0, c]), EOS) for c in range(4)]
  tails = [_codes_to_tokens(codes) for codes in
           ([0, 0, 1, 2], [0, 1, 3, 4], [0, 5, 0, 0], [2, 3, 4, 5], [5, 5, 5, 5])]
  sids = heads + tails
  trie = build_trie(sids)
  assert trie.max_len == 4
  cache = {'dummy': jnp.zeros((2, 1))}
  first = jnp.zeros((2, VOCAB))
  counts = {}
  for flag in (True, False):
    calls = []
    model = functools.partial(_uniform_tokens_to_logits, calls=calls)
    items, scores = beam_search(model, cache, trie, batch_size=2, beam_size=3,
                                first_logits=first, early_exit=flag)
    jax.block_until_ready(items)
    jax.effects_barrier()
    counts[flag] = len(calls)
    assert all(trie.contains(sids[i]) for i in np.asarray(items).reshape(-1))
    np.testing.assert_allclose(np.asarray(scores), -3 * math.log(VOCAB), rtol=1e-6)
  assert counts == {True: 2, False: 3}


@pytest.mark.parametrize('kind, seed, use_first_logits', [
    ('fixed', 10, True), ('variable', 11, True), ('sparse', 12, True),
    ('variable', 13, False)])
def test_wide_beam_is_exact_top_k(kind, seed, use_first_logits):
  # With beam_size >= #items nothing is ever pruned: beam search enumerates every item.
  sids = make_sids(kind, seed)
  beam_size = len(sids) + 3
  batch_size = 2
  items, scores, caches = run_beam_search(sids, batch_size, beam_size, seed,
                                          use_first_logits=use_first_logits)
  for b in range(batch_size):
    if use_first_logits:
      log_probs = brute_force_log_probs(sids, _row(caches, b))
    else:  # the start token's logits play the role of the prefill
      cache = _row(caches, b)
      _, cache = np_tokens_to_logits([START], cache, 0)
      log_probs = _brute_force_after_start(sids, cache)
    order = np.argsort(-log_probs, kind='stable')
    np.testing.assert_array_equal(items[b, :len(sids)], order)
    np.testing.assert_allclose(scores[b, :len(sids)], log_probs[order], rtol=1e-5, atol=1e-4)
    assert (items[b, len(sids):] == -1).all()
    assert (scores[b, len(sids):] == np.float32(MASKED)).all()


def _brute_force_after_start(sids, cache_after_start):
  """Item log-probabilities when the start token was fed at step 0 (SID token t at t + 1)."""
  out = []
  for seq in sids:
    cache, total = cache_after_start, 0.0
    logits = _logits_from_state(np, cache['hash'], cache['history'], _zero_bias(np))
    for step, token in enumerate(seq):
      if step:
        logits, cache = np_tokens_to_logits([seq[step - 1]], cache, step)
      total += _log_softmax64(logits)[token]
    out.append(total)
  return np.array(out)


@pytest.mark.parametrize('kind, beam_size, seed', [
    ('variable', 4, 20), ('sparse', 8, 21), ('fixed', 50, 22)])
def test_never_returns_an_invalid_item(kind, beam_size, seed):
  sids = make_sids(kind, seed)
  batch_size = 3
  items, scores, caches = run_beam_search(
      sids, batch_size, beam_size, seed, tokens_to_logits=adversarial_tokens_to_logits,
      bias_fn=_adversarial_bias)
  num_found = min(beam_size, len(sids))
  for b in range(batch_size):
    found = items[b, :num_found]
    assert ((found >= 0) & (found < len(sids))).all()
    assert len(set(found.tolist())) == num_found
    assert (items[b, num_found:] == -1).all()
    # Each score is that item's own sequence log-probability: mass on invalid tokens is
    # lost (log_softmax over the full vocabulary), not renormalised.
    log_probs = brute_force_log_probs(sids, _row(caches, b), _adversarial_bias)
    np.testing.assert_allclose(scores[b, :num_found], log_probs[found], rtol=1e-5, atol=1e-3)
    assert (scores[b, :num_found] < -40).all()
    assert (np.diff(scores[b, :num_found]) <= 0).all()
    ref_items, _ = reference_beam_search(sids, _row(caches, b), beam_size,
                                         bias_fn=_adversarial_bias)
    np.testing.assert_array_equal(items[b], ref_items)


def test_under_outer_jit_with_traced_weights():
  sids = make_sids('variable', 30)
  trie = jax.device_put(build_trie(sids))
  batch_size, beam_size, temperature = 5, 4, 0.5
  caches = user_caches(batch_size, seed=30)

  @functools.partial(jax.jit, static_argnames='beam_size')
  def recommend(temperature, caches, trie, beam_size):
    # The model closes over a traced "weight", as a real model closes over its params.
    def model(tokens, cache, step):
      return fake_tokens_to_logits(tokens, cache, step, temperature=temperature)
    _, caches = model(jnp.full((batch_size,), START, jnp.int32), caches, 0)  # a prefill
    first = _logits_from_state(jnp, caches['hash'], caches['history'], 0.0) * temperature
    return beam_search(lambda t, c, s: model(t, c, s + 1), caches, trie,
                       batch_size=batch_size, beam_size=beam_size, first_logits=first)

  items, scores = recommend(jnp.float32(temperature), caches, trie, beam_size=beam_size)
  items, scores = np.asarray(items), np.asarray(scores)
  np_model = functools.partial(np_tokens_to_logits, temperature=temperature)
  for b in range(batch_size):
    ref_items, ref_scores = reference_beam_search(sids, _row(caches, b), beam_size,
                                                  use_first_logits=False, np_model=np_model)
    np.testing.assert_array_equal(items[b], ref_items)
    np.testing.assert_allclose(scores[b], ref_scores, rtol=1e-5, atol=1e-4)


def test_rejects_cache_without_user_axis():
  trie = build_trie(make_sids('fixed', 0))
  caches = jax.tree.map(lambda x: np.repeat(x, 2, axis=0), user_caches(3, seed=0))
  with pytest.raises(ValueError, match='leading axis 3'):
    beam_search(fake_tokens_to_logits, caches, trie, batch_size=3, beam_size=2,
                first_logits=jnp.zeros((3, VOCAB)))
