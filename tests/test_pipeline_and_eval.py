"""Training iterator (deterministic, resumable, process-sharded), evaluation, Pop, Random."""

import ml_collections
import numpy as np
import pytest

from genrec_jax import methods
from genrec_jax.data import dataset as dataset_lib
from genrec_jax.data import synthetic
from genrec_jax.data.pipeline import eval_batches
from genrec_jax.data.pipeline import sequence_chunks
from genrec_jax.data.pipeline import train_iterator
from genrec_jax.eval import metrics as metrics_lib
from genrec_jax.eval.evaluate import evaluate
from genrec_jax.eval.evaluate import SPLIT_IDS
from genrec_jax.eval.evaluate import sample_negatives


@pytest.fixture(scope='module')
def ds():
  raw = synthetic.generate(num_users=120, num_items=80, mean_length=9, seed=3)
  return dataset_lib.preprocess(raw, kcore=2, max_history=5)


def _eval_config(**overrides):
  c = ml_collections.ConfigDict(dict(protocol='full', num_negatives=20, ks=(1, 5, 10),
                                     mask_history=False, batch_size=32))
  c.update(overrides)
  return c


def _take(it, n):
  return [next(it) for _ in range(n)]


def test_train_iterator_covers_every_example_once_per_epoch(ds):
  users, positions = ds.train_examples()
  batch_size = 7
  it = train_iterator(ds, batch_size=batch_size, seed=0, num_epochs=1)
  seen = [(int(u), int(t), tuple(h)) for b in it
          for u, t, h in zip(b['user'], b['target'], b['history'])]
  expected_hist, _, expected_target = dataset_lib.prefix_histories(ds, positions, users)
  expected = {(int(u), int(t), tuple(h))
              for u, t, h in zip(users, expected_target, expected_hist)}
  assert len(expected) == len(users)  # examples are distinct (items never repeat per user)
  assert len(seen) == len(users) // batch_size * batch_size  # drop_remainder
  assert len(set(seen)) == len(seen) and set(seen) <= expected


def test_train_iterator_resumes_from_state_exactly(ds):
  it = train_iterator(ds, batch_size=8, seed=1)
  _take(it, 3)
  state = it.get_state()
  rest = _take(it, 4)
  resumed = train_iterator(ds, batch_size=8, seed=1)
  resumed.set_state(state)
  for a, b in zip(rest, _take(resumed, 4)):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])


def test_process_shards_are_disjoint_and_cover_the_stream(ds):
  def stream(index, count, n):
    it = train_iterator(ds, batch_size=4, seed=2, process_index=index, process_count=count)
    return [(int(u), int(t), tuple(h)) for b in _take(it, n)
            for u, t, h in zip(b['user'], b['target'], b['history'])]
  whole = stream(0, 1, 6)
  first, second = stream(0, 2, 3), stream(1, 2, 3)
  assert sorted(first + second) == sorted(whole)


def test_eval_batches_pad_last_batch_and_exclude_past_items(ds):
  rows = 0
  for batch, n in eval_batches(ds, 'test', 50, mask_history=True):
    assert batch['user'].shape == (50,)
    for row in range(n):
      u = batch['user'][row]
      past = set(ds.sequence(u)[:-1].tolist())
      assert set(batch['exclude'][row][batch['exclude'][row] >= 0].tolist()) == past
    rows += n
  assert rows == ds.num_users


def test_pop_equals_brute_force_ranking(ds):
  method = methods.get('pop').build(None, ds)
  params = method.init(None)
  result = evaluate(method, params, ds, 'test', _eval_config())
  order = sorted(range(ds.num_items), key=lambda i: (-ds.item_counts[i], i))[:10]
  topk = np.tile(order, (ds.num_users, 1))
  expected = metrics_lib.compute_all(topk, ds.split_targets('test')[0], ds.item_counts,
                                     ds.is_head, ds.item_group, (1, 5, 10))
  for key, value in expected.items():
    assert result[key] == pytest.approx(value, nan_ok=True), key
  assert result['tail_slots@10'] == 0  # Pop only ever shows head items here


def test_mask_history_never_recommends_past_items(ds):
  method = methods.get('pop').build(None, ds)
  params = method.init(None)
  for batch, n in eval_batches(ds, 'test', 64, mask_history=True):
    items, _ = method.predict_topk(params, batch, 10)
    items = np.asarray(items)
    for row in range(n):
      past = set(ds.sequence(batch['user'][row])[:-1].tolist())
      assert not past & set(items[row].tolist())
      # Brute force: the 10 most popular items the user has not seen.
      expected = [i for i in sorted(range(ds.num_items),
                                    key=lambda i: (-ds.item_counts[i], i)) if i not in past]
      assert items[row].tolist() == expected[:10]


def test_random_is_deterministic_per_user_and_roughly_uniform(ds):
  config = ml_collections.ConfigDict({'seed': 5})
  method = methods.get('random').build(config, ds)
  params = method.init(None)
  a = evaluate(method, params, ds, 'test', _eval_config(batch_size=16))
  b = evaluate(method, params, ds, 'test', _eval_config(batch_size=50))
  assert {k: v for k, v in a.items() if k != 'eval_seconds'} == {
      k: v for k, v in b.items() if k != 'eval_seconds'}
  assert a['coverage@10'] > 0.9  # 120 users x 10 slots spread over 80 items


def test_sampled_negatives_are_distinct_and_never_interacted(ds):
  neg = sample_negatives(ds, 20, np.random.default_rng(0))
  for u in range(ds.num_users):
    assert len(set(neg[u].tolist())) == 20
    assert not set(neg[u].tolist()) & set(ds.sequence(u).tolist())


def test_sampled_protocol_pop_matches_hand_ranking(ds):
  method = methods.get('pop').build(None, ds)
  params = method.init(None)
  result = evaluate(method, params, ds, 'test', _eval_config(protocol='sampled'), seed=0)
  neg = sample_negatives(ds, 20, np.random.default_rng([0, SPLIT_IDS['test']]))
  targets = ds.split_targets('test')[0]
  counts = ds.item_counts
  ranks = np.array([(counts[neg[u]] >= counts[targets[u]]).sum()
                    for u in range(ds.num_users)])
  assert result['hr@5'] == pytest.approx(np.mean(ranks < 5))
  assert 'mgu@5' not in result  # popularity metrics need full ranking


@pytest.mark.parametrize('targets_per_chunk', [32, 3])
def test_sequence_chunks_train_each_target_once_with_its_prefix_history(ds, targets_per_chunk):
  users, positions = ds.train_examples()
  hist, _, target = dataset_lib.prefix_histories(ds, positions, users)
  expected = sorted((int(u), int(t), tuple(int(x) for x in h if x >= 0))
                    for u, h, t in zip(users, hist, target))
  got = []
  for batch in train_iterator(ds, batch_size=5, seed=0, num_epochs=1, kind='sequence',
                              targets_per_chunk=targets_per_chunk):
    assert batch['items'].shape[1] == ds.max_history + targets_per_chunk
    assert (batch['is_target'].sum(1) <= targets_per_chunk).all()
    for u, items, is_target in zip(batch['user'], batch['items'], batch['is_target']):
      for col in np.flatnonzero(is_target):
        history = items[max(0, col - ds.max_history):col]
        got.append((int(u), int(items[col]), tuple(int(x) for x in history)))
  # drop_remainder may leave out the last chunks; everything seen is right and unique.
  assert len(set(got)) == len(got) and set(got) <= set(expected)
  assert len(got) > 0.8 * len(expected)
  _, _, firsts, ends = sequence_chunks(ds, targets_per_chunk=4)
  assert (ends - firsts).sum() == len(users)  # every target in exactly one chunk
