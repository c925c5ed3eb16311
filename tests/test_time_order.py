"""Time order after the raw -> TFDS -> preprocessing round trip, against a plain reading.

The reference here never touches the package: it parses the raw file with plain Python and
sorts each user's lines by (timestamp, line number). Timestamps 1 s (1 ms) apart at real
magnitudes catch any float32 on the way (a 64 s step near 8.9e8 s, ~2 min near 1.7e12 ms).
"""

import collections
import json
import os

import numpy as np

from genrec_jax import config as config_lib
from genrec_jax.data import readers
from genrec_jax.data.load import load_dataset


def _data_config(tmp_path, source, category, data_dir, kcore):
  config = config_lib.base_config('pop', 'ml-100k').data
  config.source, config.category, config.dir = source, category, str(data_dir)
  config.tfds_dir = str(tmp_path / 'tfds')
  config.kcore = kcore
  return config


def _sequences_by_raw_id(dataset):
  return {dataset.user_ids[u]: [dataset.item_ids[i] for i in dataset.sequence(u)]
          for u in range(dataset.num_users)}


def _reference_order(rows):
  """rows: (user, item, time) in file order -> {user: items sorted by (time, line)}."""
  by_user = collections.defaultdict(list)
  for line, (user, item, time) in enumerate(rows):
    by_user[user].append((time, line, item))
  return {user: [item for _, _, item in sorted(entries)] for user, entries in by_user.items()}


def _close_times(num_users, base, step, rng):
  """Per user 6 distinct items at base + k*step with shuffled file order and some exact ties."""
  rows = []
  for u in range(num_users):
    offsets = rng.permutation(6)
    offsets[rng.integers(6)] = offsets[rng.integers(6)]  # an exact tie
    start = base + u * 10 * step
    rows += [(f'u{u}', f'i{(u * 7 + k) % 40}', start + int(o) * step)
             for k, o in enumerate(offsets)]
  order = rng.permutation(len(rows))  # users interleaved in the file
  return [rows[r] for r in order]


def test_recbole_seconds_one_apart_keep_their_order(tmp_path):
  rows = _close_times(60, 886_989_600, 1, np.random.default_rng(0))
  (tmp_path / 'raw').mkdir()
  with open(tmp_path / 'raw' / 'toy.inter', 'w') as f:
    f.write('user_id:token\titem_id:token\ttimestamp:float\n')
    f.writelines(f'{u}\t{i}\t{t}\n' for u, i, t in rows)
  config = _data_config(tmp_path, 'recbole', 'toy', tmp_path / 'raw', kcore=1)
  dataset = load_dataset(config, str(tmp_path / 'run'))
  assert _sequences_by_raw_id(dataset) == _reference_order(rows)


def test_amazon2023_milliseconds_one_apart_keep_their_order(tmp_path):
  rows = _close_times(60, 1_700_000_000_000, 1, np.random.default_rng(1))
  (tmp_path / 'raw').mkdir()
  with open(tmp_path / 'raw' / 'Toy.jsonl', 'w') as f:
    f.writelines(json.dumps({'user_id': u, 'parent_asin': i, 'asin': i, 'timestamp': t,
                             'rating': 5.0}) + '\n' for u, i, t in rows)
  config = _data_config(tmp_path, 'amazon2023', 'Toy', tmp_path / 'raw', kcore=1)
  dataset = load_dataset(config, str(tmp_path / 'run'))
  assert _sequences_by_raw_id(dataset) == _reference_order(rows)


def test_movielens100k_targets_equal_a_plain_reading_of_the_raw_file(tmp_path):
  data_dir = readers.recbole_example_dir('ml-100k')
  rows = []
  with open(os.path.join(data_dir, 'ml-100k.inter')) as f:
    next(f)  # user_id:token item_id:token rating:float timestamp:float
    for line in f:
      user, item, _, time = line.rstrip('\n').split('\t')
      rows.append((user, item, int(time)))
  # Plain iterative 5-core (users need max(5, 3) items), after the (time, line) sort.
  order = _reference_order(rows)
  while True:
    item_users = collections.Counter(i for items in order.values() for i in set(items))
    kept = {u: [i for i in items if item_users[i] >= 5] for u, items in order.items()}
    kept = {u: items for u, items in kept.items() if len(items) >= 5}
    if kept == order:
      break
    order = kept

  dataset = load_dataset(_data_config(tmp_path, 'movielens100k', '', data_dir, kcore=5),
                         str(tmp_path / 'run'))
  assert dataset.num_users == len(order) == 943
  for split, back in (('test', 1), ('valid', 2)):
    targets, _ = dataset.split_targets(split)
    ours = {dataset.user_ids[u]: dataset.item_ids[t] for u, t in enumerate(targets)}
    assert ours == {u: items[-back] for u, items in order.items()}, split
  # User 110 of the issue: 1246 at t=886989613 comes after 1249 and 364 at t=886989612.
  seq = _sequences_by_raw_id(dataset)['110']
  assert seq.index('1246') > max(seq.index('1249'), seq.index('364'))


def test_a_rewritten_raw_file_of_the_same_size_and_second_is_converted_again(tmp_path):
  (tmp_path / 'raw').mkdir()
  inter = tmp_path / 'raw' / 'toy.inter'
  def write(first_item):
    with open(inter, 'w') as f:
      f.write('user_id:token\titem_id:token\ttimestamp:float\n')
      f.writelines(f'u{u}\t{first_item if k == 0 else f"i{k}"}\t{k}\n'
                   for u in range(4) for k in range(4))
  write('a0')
  stamp = os.stat(inter).st_mtime_ns // 10**9 * 10**9
  os.utime(inter, ns=(stamp, stamp))
  config = _data_config(tmp_path, 'recbole', 'toy', tmp_path / 'raw', kcore=1)
  config.num_groups = 2  # 4 items
  assert 'a0' in load_dataset(config, str(tmp_path / 'run')).item_ids
  write('b0')  # same size, same whole second, another 1 ns
  os.utime(inter, ns=(stamp + 1, stamp + 1))
  items = load_dataset(config, str(tmp_path / 'run')).item_ids
  assert 'b0' in items and 'a0' not in items
