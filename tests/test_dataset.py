"""Preprocessing: sort, dedup, k-core, split, popularity, head/tail, groups, cache."""

import numpy as np
import pytest

from genrec_jax.data import dataset as dataset_lib
from genrec_jax.data.raw import DataError
from genrec_jax.data.raw import RawData


def _raw(rows, text=None):
  users, items, times = zip(*rows)
  return RawData(name='t', users=np.array(users), items=np.array(items),
                 timestamps=np.array(times, float), item_text=text or {},
                 source_files=('f',))


def _sequences(ds):
  return {ds.user_ids[u]: [ds.item_ids[i] for i in ds.sequence(u)]
          for u in range(ds.num_users)}


def test_stable_time_sort_keeps_file_order_among_ties_and_dedups_first():
  rows = [('u1', 'c', 5), ('u1', 'a', 1), ('u1', 'b', 5), ('u1', 'a', 9), ('u1', 'd', 7),
          ('u2', 'd', 3), ('u2', 'c', 3), ('u2', 'b', 1)]
  ds = dataset_lib.preprocess(_raw(rows), kcore=1, num_groups=2)
  # u1: a@1, c@5 (file order before b@5), b@5, d@7; the later duplicate a@9 is removed.
  assert _sequences(ds) == {'u1': ['a', 'c', 'b', 'd'], 'u2': ['b', 'd', 'c']}
  assert ds.log['duplicates_removed'] == 1


def test_iterative_kcore_matches_brute_force():
  rng = np.random.default_rng(0)
  rows = [(f'u{rng.integers(40)}', f'i{int(rng.zipf(1.5)) % 60}', float(t))
          for t in range(600)]
  ds = dataset_lib.preprocess(_raw(rows), kcore=4)
  # Brute force: drop until every remaining user has >= 4 distinct items and item >= 4 users.
  pairs = {}
  for u, i, t in rows:
    pairs.setdefault((u, i), t)
  alive = set(pairs)
  while True:
    ucount, icount = {}, {}
    for u, i in alive:
      ucount[u] = ucount.get(u, 0) + 1
      icount[i] = icount.get(i, 0) + 1
    keep = {(u, i) for u, i in alive if ucount[u] >= 4 and icount[i] >= 4}
    if keep == alive:
      break
    alive = keep
  got = {(u, i) for u, seq in _sequences(ds).items() for i in seq}
  assert got == alive and len(got) > 50


def test_kcore_that_removes_everything_is_a_clear_error():
  rows = [('u1', 'a', 1), ('u1', 'b', 2), ('u2', 'a', 3)]
  with pytest.raises(DataError, match='nothing is left after 5-core'):
    dataset_lib.preprocess(_raw(rows), kcore=5)


def _toy():
  # u0: a b c d e   u1: a b c   u2: b a d c   (kcore=1)
  rows = [('u0', x, t) for t, x in enumerate('abcde')]
  rows += [('u1', x, t) for t, x in enumerate('abc')]
  rows += [('u2', x, t) for t, x in enumerate('badc')]
  return dataset_lib.preprocess(_raw(rows), kcore=1, max_history=2, head_ratio=0.4,
                                num_groups=2)


def test_leave_one_out_split_and_popularity_by_hand():
  ds = _toy()
  name = lambda xs: [ds.item_ids[i] for i in xs]
  test_t, _ = ds.split_targets('test')
  valid_t, _ = ds.split_targets('valid')
  assert name(test_t) == ['e', 'c', 'c'] and name(valid_t) == ['d', 'b', 'd']
  # Training parts: u0 a b c, u1 a, u2 b a -> counts a=3 b=2 c=1 d=0 e=0.
  assert dict(zip(ds.item_ids, ds.item_counts)) == {'a': 3, 'b': 2, 'c': 1, 'd': 0, 'e': 0}
  # head = ceil(0.4 * 5) = 2 items: a, b. Group = floor(rank * 2 / 5): ranks 0-2 -> 0.
  assert name(np.flatnonzero(ds.is_head)) == ['a', 'b']
  assert ds.item_group.tolist() == [0, 0, 0, 1, 1]
  # Test histories (capped at 2, left-padded): u0 [c d], u1 [a b], u2 [a d].
  hist, length, targets = ds.histories('test')
  assert [name(h) for h in hist] == [['c', 'd'], ['a', 'b'], ['a', 'd']]
  assert list(length) == [2, 2, 2]
  hist, length, _ = ds.histories('valid')
  assert hist[1].tolist() == [-1, ds.item_ids.tolist().index('a')] and length[1] == 1


def test_train_examples_are_every_prefix_of_the_training_part():
  ds = _toy()
  users, positions = ds.train_examples()
  hist, length, target = dataset_lib.prefix_histories(ds, positions, users)
  name = lambda xs: ''.join(ds.item_ids[i] for i in xs if i >= 0)
  got = sorted((ds.user_ids[u], name(h), ds.item_ids[t])
               for u, h, t in zip(users, hist, target))
  # u0 train a b c -> (a->b), (ab->c); u1 train a -> none; u2 train b a -> (b->a).
  assert got == [('u0', 'a', 'b'), ('u0', 'ab', 'c'), ('u2', 'b', 'a')]


def test_popularity_split_ties_and_group_sizes():
  counts = np.array([5, 1, 5, 0, 2, 2, 9, 0, 0, 3])
  is_head, groups = dataset_lib.popularity_split(counts, 0.2, 5)
  assert np.flatnonzero(is_head).tolist() == [0, 6]  # 9, then the first of the two 5s
  assert np.bincount(groups).tolist() == [2, 2, 2, 2, 2]
  order = np.argsort(-counts, kind='stable')
  assert (np.diff(groups[order]) >= 0).all()  # groups follow popularity


def test_cache_round_trip(tmp_path):
  ds = _toy()
  path = str(tmp_path / 'd.npz')
  dataset_lib.save(ds, path)
  back = dataset_lib.load(path)
  for field in ('seq_items', 'seq_offsets', 'item_counts', 'is_head', 'item_group',
                'item_ids', 'user_ids'):
    np.testing.assert_array_equal(getattr(ds, field), getattr(back, field))
  assert back.item_text == ds.item_text and back.log == ds.log
