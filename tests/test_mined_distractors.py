"""AUO distractors mined from a trained run's beam (experiments/mine_distractors.py) and
given to Ghost (ghost.distractors_npy), on hand-made cases."""

import numpy as np
import pytest

from experiments import mine_distractors
from genrec_jax.methods import ghost

IS_HEAD = np.array([True, True, True, False, False])  # items 3 and 4 are tail items


def test_ranked_above_counts_head_items_before_the_tail_target():
  top = np.array([[0, 3, 1],    # target 3 at slot 1: only item 0 is above it
                  [1, 0, 2],    # target 3 missing: the whole top counts
                  [4, 2, 1],    # target 4 at slot 0: nothing above it
                  [2, 4, 0],    # target 4 at slot 1: item 2
                  [1, 2, 0]])   # a head target: never counted
  targets = np.array([3, 3, 4, 4, 0])
  got = mine_distractors.ranked_above(top, targets, IS_HEAD, k_b=2)
  # Item 3: item 0 twice, items 1 and 2 once each (ties: lower index first).
  np.testing.assert_array_equal(got[3], [0, 1])
  np.testing.assert_array_equal(got[4], [2, -1])  # only item 2 was ever above item 4
  assert (got[IS_HEAD] == -1).all()


def test_ranked_above_never_counts_tail_items_or_empty_slots():
  top = np.array([[4, -1, 1]])
  got = mine_distractors.ranked_above(top, np.array([3]), IS_HEAD, k_b=3)
  np.testing.assert_array_equal(got[3], [1, -1, -1])


def test_given_distractors_are_completed_from_the_papers_rule(tmp_path):
  fallback = np.array([[-1, -1], [-1, -1], [-1, -1], [0, 1], [1, 2]])
  given = np.array([[-1, -1], [-1, -1], [-1, -1], [2, 2], [-1, -1]])
  np.save(tmp_path / 'd.npy', given)
  got = ghost.given_distractors(str(tmp_path / 'd.npy'), fallback, IS_HEAD)
  np.testing.assert_array_equal(got[3], [2, 0])  # its own first, no repeats, then the rule's
  np.testing.assert_array_equal(got[4], [1, 2])  # nothing mined: the rule's


@pytest.mark.parametrize('given, message', [
    (np.zeros((5, 3), np.int64), 'of shape'),  # another K_b
    (np.full((5, 2), 0.5), 'integer'),
    (np.array([[-1, -1]] * 3 + [[4, -1], [-1, -1]]), 'tail item'),
])
def test_bad_distractor_files_are_named(tmp_path, given, message):
  np.save(tmp_path / 'd.npy', given)
  with pytest.raises(ValueError, match=message):
    ghost.given_distractors(str(tmp_path / 'd.npy'), np.zeros((5, 2), np.int64), IS_HEAD)
