"""SIDTable token layout, dedup level, validation and save/load."""

import numpy as np
import pytest

from genrec_jax.data.raw import DataError
from genrec_jax.tokenize.sid_table import SIDTable
from genrec_jax.tokenize.sid_table import add_dedup_level


def _skt_like():
  # Levels a, b (head, size 3) and t (tail, size 2); items 0,1 head (EOS), 2,3 tail.
  codes = np.array([[0, 1, -1], [2, 0, -1], [0, 1, 0], [0, 1, 1]], np.int32)
  eos = np.array([True, True, False, False])
  return SIDTable(codes=codes, level_sizes=(3, 3, 2), ends_with_eos=eos,
                  level_names=('a', 'b', 't'))


def test_item_tokens_by_hand():
  table = _skt_like()
  # offsets a=0, b=3, t=6; EOS = 8; vocab = 9.
  assert table.level_offsets.tolist() == [0, 3, 6]
  assert table.eos_token == 8 and table.vocab_size == 9
  assert table.item_tokens().tolist() == [[0, 4, 8], [2, 3, 8], [0, 4, 6], [0, 4, 7]]
  assert table.lengths.tolist() == [3, 3, 3, 3]
  assert table.token_names()[:4] == ['<a_0>', '<a_1>', '<a_2>', '<b_0>']
  assert table.token_names()[-1] == '<sid_eos>' and len(table.token_names()) == 9


def test_levels_skipped_by_an_item_are_left_out_of_its_tokens():
  # Item 0 skips level 1 and uses the dedup level 2.
  codes = np.array([[1, -1, 0], [1, 0, -1], [0, 1, -1]], np.int32)
  table = SIDTable(codes=codes, level_sizes=(2, 2, 1), ends_with_eos=np.ones(3, bool),
                   level_names=('a', 'b', 'dedup'))
  assert table.item_tokens().tolist() == [[1, 4, 5], [1, 2, 5], [0, 3, 5]]


def test_duplicate_and_prefix_sids_are_rejected():
  with pytest.raises(DataError, match='share the SID'):
    SIDTable(codes=np.array([[0, 1], [0, 1]]), level_sizes=(2, 2),
             ends_with_eos=np.zeros(2, bool), level_names=('a', 'b'))
  with pytest.raises(DataError, match='is a prefix of'):  # head without EOS
    SIDTable(codes=np.array([[0, -1], [0, 1]]), level_sizes=(2, 2),
             ends_with_eos=np.zeros(2, bool), level_names=('a', 'b'))
  with pytest.raises(DataError, match='outside'):
    SIDTable(codes=np.array([[0, 2]]), level_sizes=(2, 2), ends_with_eos=np.zeros(1, bool),
             level_names=('a', 'b'))


def test_dedup_level_colliding_and_all():
  codes = np.array([[0, 1], [0, 1], [1, 1], [0, 1], [1, 0]], np.int32)
  eos = np.zeros(5, bool)
  out, size, rate = add_dedup_level(codes, eos, 'colliding')
  assert rate == pytest.approx(3 / 5) and size == 3
  assert out[:, 2].tolist() == [0, 1, -1, 2, -1]
  out_all, size_all, _ = add_dedup_level(codes, eos, 'all')
  assert out_all[:, 2].tolist() == [0, 1, 0, 2, 0] and size_all == 3
  for c, s in ((out, size), (out_all, size_all)):
    SIDTable(codes=c, level_sizes=(2, 2, s), ends_with_eos=eos,
             level_names=('a', 'b', 'dedup'))  # unique and prefix-free now
  # Same codes but one ends with EOS: no collision.
  _, _, rate = add_dedup_level(codes[:2], np.array([True, False]), 'colliding')
  assert rate == 0.0


def test_save_load_round_trip_and_item_count_check(tmp_path):
  table = _skt_like()
  path = str(tmp_path / 'sids.npz')
  table.save(path)
  back = SIDTable.load(path, num_items=4)
  assert back.item_tokens().tolist() == table.item_tokens().tolist()
  assert back.level_names == table.level_names
  with pytest.raises(DataError, match='dataset has 5'):
    SIDTable.load(path, num_items=5)


def test_code_usage_by_hand():
  from genrec_jax.tokenize import stats  # pylint: disable=g-import-not-at-top
  usage = stats.code_usage(_skt_like())
  # Level a codes 0, 2, 0, 0 of 3: 2/3 used, perplexity exp(H(3/4, 1/4)).
  p = np.array([0.75, 0.25])
  assert usage[0]['codes_used'] == pytest.approx(2 / 3)
  assert usage[0]['perplexity'] == pytest.approx(np.exp(-(p * np.log(p)).sum()))
  assert usage[2]['items'] == 2  # the tail level: head items skip it
