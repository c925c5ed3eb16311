"""The TFDS cache of raw files: round trip, and two runs converting the same files at once."""

import numpy as np

from genrec_jax.data import tfds_raw
from genrec_jax.data.raw import RawData


def _raw():
  return RawData(name='tiny', users=np.array(['u2', 'u1', 'u2', 'u1']),
                 items=np.array(['a', 'b', 'c', 'a']), timestamps=np.array([3., 1., 2., 5.]),
                 item_text={'a': {'title': 'Alpha'}}, source_files=('x.csv',),
                 dropped={'no_item': 1})


def _by_user(raw):
  return {u: [(i, t) for uu, i, t in zip(raw.users, raw.items, raw.timestamps) if uu == u]
          for u in sorted(set(raw.users))}


def test_cache_round_trips_and_is_read_without_the_reader(tmp_path):
  first = tfds_raw.load_raw_cached(_raw, name='tiny', tfds_dir=str(tmp_path))
  def fail():
    raise AssertionError('the cached conversion should be reused')
  second = tfds_raw.load_raw_cached(fail, name='tiny', tfds_dir=str(tmp_path))
  for raw in (first, second):
    assert _by_user(raw) == _by_user(_raw())  # file order kept within each user
    assert raw.item_text == {'a': {'title': 'Alpha'}} and raw.dropped == {'no_item': 1}


def test_a_run_that_loses_the_conversion_race_reads_the_winners_cache(tmp_path):
  # The outer conversion's reader runs a whole inner conversion first, so the outer one finds
  # its destination taken when it renames its incomplete directory: what a sweep's or a SLURM
  # array's concurrent first runs do.
  def read_after_another_run_converted():
    tfds_raw.load_raw_cached(_raw, name='tiny', tfds_dir=str(tmp_path))
    return _raw()
  raw = tfds_raw.load_raw_cached(read_after_another_run_converted, name='tiny',
                                 tfds_dir=str(tmp_path))
  assert _by_user(raw) == _by_user(_raw())
