"""AUO distractors mined from a trained run's beam (ghost.ranked_above; run.mine_distractors
is checked on a trained smoke run in test_methods_smoke.py) and given to Ghost
(ghost.distractors_npy or ghost.distractors_run), on hand-made cases."""

import numpy as np
import pytest

from genrec_jax import config as config_lib
from genrec_jax.methods import ghost

IS_HEAD = np.array([True, True, True, False, False])  # items 3 and 4 are tail items


def test_ranked_above_counts_head_items_before_the_tail_target():
  top = np.array([[0, 3, 1],    # target 3 at slot 1: only item 0 is above it
                  [1, 0, 2],    # target 3 missing: the whole top counts
                  [4, 2, 1],    # target 4 at slot 0: nothing above it
                  [2, 4, 0],    # target 4 at slot 1: item 2
                  [1, 2, 0]])   # a head target: never counted
  targets = np.array([3, 3, 4, 4, 0])
  got = ghost.ranked_above(top, targets, IS_HEAD, k_b=2)
  # Item 3: item 0 twice, items 1 and 2 once each (ties: lower index first).
  np.testing.assert_array_equal(got[3], [0, 1])
  np.testing.assert_array_equal(got[4], [2, -1])  # only item 2 was ever above item 4
  assert (got[IS_HEAD] == -1).all()


def test_ranked_above_never_counts_tail_items_or_empty_slots():
  top = np.array([[4, -1, 1]])
  got = ghost.ranked_above(top, np.array([3]), IS_HEAD, k_b=3)
  np.testing.assert_array_equal(got[3], [1, -1, -1])


def test_given_distractors_are_completed_from_the_papers_rule():
  fallback = np.array([[-1, -1], [-1, -1], [-1, -1], [0, 1], [1, 2]])
  given = np.array([[-1, -1], [-1, -1], [-1, -1], [2, 2], [-1, -1]])
  got = ghost.given_distractors(given, fallback, IS_HEAD, 'ghost.distractors_npy=d.npy')
  np.testing.assert_array_equal(got[3], [2, 0])  # its own first, no repeats, then the rule's
  np.testing.assert_array_equal(got[4], [1, 2])  # nothing mined: the rule's


@pytest.mark.parametrize('given, message', [
    (np.zeros((5, 3), np.int64), 'of shape'),  # another K_b
    (np.full((5, 2), 0.5), 'integer'),
    (np.array([[-1, -1]] * 3 + [[4, -1], [-1, -1]]), 'tail item'),
])
def test_bad_distractors_name_their_source(given, message):
  with pytest.raises(ValueError, match=f'ghost.distractors_run=RUN: .*{message}'):
    ghost.given_distractors(given, np.zeros((5, 2), np.int64), IS_HEAD,
                            'ghost.distractors_run=RUN')


def test_a_distractor_file_and_a_run_to_mine_are_not_both_given(tmp_path):
  config = ghost.default_config()
  np.save(tmp_path / 'd.npy', np.zeros((5, 5), np.int64))
  config.ghost.update(distractors_npy=str(tmp_path / 'd.npy'), distractors_run='runs/x')
  with pytest.raises(ValueError, match='distractors_run: set it or ghost.distractors_npy'):
    ghost.validate_config(config)
