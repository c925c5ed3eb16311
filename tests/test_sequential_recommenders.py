"""SASRec, BERT4Rec and GRU4Rec on the sequential family: SASRec's causal mask, BERT4Rec's
masking and its loss at masked positions only, GRU4Rec against a NumPy GRU, the 'window'
and 'masked' training examples, and sampled negatives that never hit the sequence."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genrec_jax.data import dataset as dataset_lib
from genrec_jax.data import pipeline
from genrec_jax.data import synthetic
from genrec_jax.losses import sample_negatives
from genrec_jax.methods.sequential import SampledBinaryCrossEntropy
from genrec_jax.methods.sequential import SequentialRecommender
from genrec_jax.models.bert4rec import BERT4Rec
from genrec_jax.models.gru4rec import GRU4Rec
from genrec_jax.models.sasrec import SASRec

NUM_ITEMS, T = 23, 6


@pytest.fixture(scope='module')
def ds():
  raw = synthetic.generate(num_users=60, num_items=40, mean_length=14, seed=5)
  return dataset_lib.preprocess(raw, kcore=2, max_history=5)


def _history(seed=0, batch=3):
  h = np.random.default_rng(seed).integers(0, NUM_ITEMS, (batch, T)).astype(np.int32)
  h[0, :2] = -1  # left padding
  return h


def test_sasrec_state_at_t_ignores_later_items_but_not_earlier_ones():
  model = SASRec(num_items=NUM_ITEMS, max_len=T, hidden=8, num_layers=2, num_heads=2,
                 dropout=0.0)
  history = _history()
  params = model.init(jax.random.PRNGKey(0), jnp.asarray(history))
  apply = jax.jit(lambda h: model.apply(params, h, method='encode'))
  encode = lambda h: np.asarray(apply(jnp.asarray(h)))
  base = encode(history)
  t = 3
  later = history.copy()
  later[:, t + 1:] = (later[:, t + 1:] + 7) % NUM_ITEMS
  changed = encode(later)
  np.testing.assert_allclose(changed[:, :t + 1], base[:, :t + 1], rtol=1e-6, atol=1e-6)
  assert np.abs(changed[:, t + 1:] - base[:, t + 1:]).max() > 1e-3
  earlier = history.copy()
  earlier[1:, t - 1] = (earlier[1:, t - 1] + 5) % NUM_ITEMS  # rows without padding there
  assert np.abs(encode(earlier)[1:, t] - base[1:, t]).max() > 1e-3


def test_mask_items_rate_last_only_rows_and_labels():
  rng = np.random.default_rng(0)
  items = rng.integers(0, 50, (4000, 21)).astype(np.int32)
  items[:, :3] = -1  # padding is never masked
  last_only = np.zeros(4000, bool)
  last_only[::4] = True
  tokens, labels = pipeline.mask_items(items, rng, 0.2, last_only)
  masked = tokens == pipeline.MASK
  np.testing.assert_array_equal(masked, labels >= 0)  # a label exactly where masked
  np.testing.assert_array_equal(labels[masked], items[masked])
  np.testing.assert_array_equal(tokens[~masked], items[~masked])
  assert not masked[:, :3].any()
  assert (masked[last_only].sum(axis=1) == 1).all() and masked[last_only, -1].all()
  random_rows = masked[~last_only][:, 3:]
  assert abs(random_rows.mean() - 0.2) < 0.005  # 18 items: P(none masked) adds ~0.1%
  assert random_rows.any(axis=1).all()  # at least one masked item per row


def test_bert4rec_loss_is_the_cross_entropy_at_masked_positions_only():
  model = BERT4Rec(num_items=NUM_ITEMS, max_len=T - 1, hidden=8, num_layers=1, num_heads=2,
                   dropout=0.0)
  method = SequentialRecommender(model, T - 1)
  params = nn.unbox(method.init(jax.random.PRNGKey(0)))
  items = _history()
  tokens, labels = pipeline.mask_items(items, np.random.default_rng(1), 0.4,
                                       np.zeros(3, bool))
  batch = {'tokens': jnp.asarray(tokens), 'labels': jnp.asarray(labels)}
  loss, _ = jax.jit(method.loss_fn)(params, batch, jax.random.PRNGKey(2))  # dropout 0
  encode_tokens = jax.jit(lambda t: model.apply({'params': params}, t, method='encode_tokens'))
  states = np.asarray(encode_tokens(batch['tokens']), np.float64)
  table = np.asarray(params['item_embedding']['embedding'][:NUM_ITEMS], np.float64)
  by_hand = []
  for b, t in zip(*np.nonzero(labels >= 0)):
    logits = table @ states[b, t]
    by_hand.append(math.log(np.exp(logits - logits.max()).sum()) + logits.max() -
                   logits[labels[b, t]])
  np.testing.assert_allclose(float(loss), np.mean(by_hand), rtol=1e-5)
  # the next-item state is the state at a MASK appended to the history
  appended = np.concatenate([items[:, 1:], np.full((3, 1), pipeline.MASK)], axis=1)
  np.testing.assert_allclose(jax.jit(method.user_states)(params, jnp.asarray(items[:, 1:])),
                             encode_tokens(jnp.asarray(appended))[:, -1], rtol=1e-6, atol=1e-6)


def _numpy_gru(x, valid, w_x, b_x, w_h, b_h):
  """PyTorch's GRU equations, one step and one sequence at a time, in float64."""
  hidden = w_h.shape[0]
  sig = lambda v: 1.0 / (1.0 + np.exp(-v))
  out = np.zeros(x.shape[:2] + (hidden,))
  for b in range(x.shape[0]):
    h = np.zeros(hidden)
    for t in range(x.shape[1]):
      if valid[b, t]:
        gx, gh = x[b, t] @ w_x + b_x, h @ w_h + b_h
        r = sig(gx[:hidden] + gh[:hidden])
        z = sig(gx[hidden:2 * hidden] + gh[hidden:2 * hidden])
        n = np.tanh(gx[2 * hidden:] + r * gh[2 * hidden:])
        h = (1 - z) * n + z * h
      out[b, t] = h
  return out


def test_gru4rec_equals_a_step_by_step_numpy_gru():
  model = GRU4Rec(num_items=NUM_ITEMS, max_len=T, hidden=6, num_layers=2, dropout=0.0)
  history = _history(3)
  params = nn.unbox(model.init(jax.random.PRNGKey(1), jnp.asarray(history))['params'])
  params = jax.tree.map(lambda p: p + 0.1, params)  # non-zero biases
  got = np.asarray(jax.jit(lambda p, h: model.apply({'params': p}, h, method='encode'))(
      params, jnp.asarray(history)))
  f64 = lambda a: np.asarray(a, np.float64)
  valid = history >= 0
  x = f64(params['item_embedding']['embedding'])[np.maximum(history, 0)] * valid[..., None]
  for layer in ('layers_0', 'layers_1'):
    p = {k: f64(v) for k, v in params[layer].items()}
    x = _numpy_gru(x, valid, p['input_kernel'], p['input_bias'], p['recurrent_kernel'],
                   p['recurrent_bias'])
  expected = x @ f64(params['output']['kernel']) + f64(params['output']['bias'])
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_window_examples_cover_every_target_once_with_its_previous_item(ds):
  it = pipeline.train_iterator(ds, batch_size=1, seed=0, num_epochs=1, kind='window')
  seen = []
  for batch in it:
    h, t, u = batch['history'][0], batch['targets'][0], int(batch['user'][0])
    seq = list(ds.train_sequence(u))
    for c in np.nonzero(t >= 0)[0]:
      pos = seq.index(int(t[c]))
      assert h[c] == seq[pos - 1] and list(h[:c + 1][h[:c + 1] >= 0]) == seq[
          max(0, pos - 1 - c):pos]
      seen.append((u, int(t[c])))
  expected = [(u, int(i)) for u in range(ds.num_users) for i in ds.train_sequence(u)[1:]]
  assert sorted(seen) == sorted(expected)
  assert pipeline.num_train_examples(ds, 'window') == len(pipeline.windows(ds, 6, 5)[0])


def test_gru4rec_window_loss_equals_the_mean_of_its_prefix_losses():
  model = GRU4Rec(num_items=NUM_ITEMS, max_len=T, hidden=6, dropout=0.0)
  method = SequentialRecommender(model, T)
  params = method.init(jax.random.PRNGKey(0))
  history = _history(4)
  targets = np.concatenate([history[:, 1:], np.array([[1], [2], [3]])], axis=1)
  targets[history < 0] = -1
  loss_fn = jax.jit(method.loss_fn)
  loss, _ = loss_fn(params, {'history': history, 'targets': targets}, jax.random.PRNGKey(0))
  prefixes, prefix_targets = [], []
  for b, t in zip(*np.nonzero(targets >= 0)):
    h = np.full(T, -1, np.int32)
    h[T - t - 1:] = history[b, :t + 1]
    prefixes.append(h)
    prefix_targets.append(targets[b, t])
  per_prefix, _ = loss_fn(params, {'history': np.stack(prefixes),  # the mean over prefixes
                                   'target': np.array(prefix_targets)}, jax.random.PRNGKey(0))
  np.testing.assert_allclose(float(loss), float(per_prefix), rtol=1e-5)


@pytest.mark.parametrize('kind', ['prefix', 'window', 'masked'])
def test_sampled_negatives_never_include_a_history_item_or_the_positive(kind):
  model = (BERT4Rec(num_items=NUM_ITEMS, max_len=T - 1, hidden=8, num_layers=1, dropout=0.0)
           if kind == 'masked' else SASRec(num_items=NUM_ITEMS, max_len=T, hidden=8,
                                           num_layers=1, dropout=0.0))
  method = SequentialRecommender(model, T, terms=(SampledBinaryCrossEntropy(3),))
  params = method.init(jax.random.PRNGKey(0))
  rows = np.stack([np.random.default_rng(s).permutation(NUM_ITEMS)[:T + 1]
                   for s in range(8)]).astype(np.int32)  # 7 distinct items per sequence
  rows[0, :3] = -1
  if kind == 'prefix':
    batch = {'history': rows[:, :T], 'target': rows[:, T]}
  elif kind == 'window':
    batch = {'history': rows[:, :T], 'targets': rows[:, 1:]}
  else:
    tokens, labels = pipeline.mask_items(rows[:, 1:], np.random.default_rng(0), 0.3,
                                         np.zeros(8, bool))
    batch = {'tokens': tokens, 'labels': labels}
  exclude, rng = jax.jit(lambda p, b: (lambda o: (o.exclude, o.rng))(method.outputs(
      p, b, jax.random.PRNGKey(1))))(params, batch)
  negatives = np.asarray(sample_negatives(rng, exclude, NUM_ITEMS, 500))
  for row, drawn in zip(rows[:, 1:] if kind == 'masked' else rows, negatives):
    assert not set(drawn.tolist()) & set(row[row >= 0].tolist())
    assert len(set(drawn.tolist())) == NUM_ITEMS - (row >= 0).sum()  # the rest, all drawn


def test_masked_examples_resume_exactly_and_are_masked_anew_each_epoch(ds):
  it = pipeline.train_iterator(ds, batch_size=4, seed=3, kind='masked', mask_prob=0.3)
  for _ in range(2):
    next(it)
  state = it.get_state()
  rest = [next(it) for _ in range(3)]
  resumed = pipeline.train_iterator(ds, batch_size=4, seed=3, kind='masked', mask_prob=0.3)
  resumed.set_state(state)
  for a, b in zip(rest, [next(resumed) for _ in range(3)]):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  per_epoch = pipeline.num_train_examples(ds, 'masked') // 4
  one = pipeline.train_iterator(ds, batch_size=4, seed=3, kind='masked', mask_prob=0.3,
                                num_epochs=2)
  batches = [next(one) for _ in range(2 * per_epoch)]
  masks = lambda part: {(int(u), tuple(np.where(l >= 0, l, t))): tuple(l >= 0)
                        for b in part for u, t, l in zip(b['user'], b['tokens'], b['labels'])}
  first, second = masks(batches[:per_epoch]), masks(batches[per_epoch:])
  same_windows = set(first) & set(second)
  assert same_windows and any(first[w] != second[w] for w in same_windows)
