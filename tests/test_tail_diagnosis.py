"""experiments/tail_diagnosis.py's counts on hand-made cases (the run-level part is checked on a
trained Ghost run in test_methods_smoke.py)."""

import numpy as np

from experiments import tail_diagnosis

# Items 0, 1 head; 2, 3 tail. Item 2 branches off head item 0 at its last token; item 3 shares
# nothing with a head item; item 1 has two tokens only.
ITEM_TOKENS = np.array([[1, 10, 20], [1, 11, -1], [1, 10, 21], [2, 12, 22]])
IS_HEAD = np.array([True, True, False, False])


def test_node_support_counts_the_targets_through_each_head_and_tail_only_node():
  levels = tail_diagnosis.node_support(ITEM_TOKENS, IS_HEAD, np.array([5, 3, 2, 1]))
  # Level 1: node (1) holds items 0, 1, 2 (5 + 3 + 2 targets); (2) only the tail item 3.
  np.testing.assert_array_equal(levels[0]['head_support'], [10])
  np.testing.assert_array_equal(levels[0]['tail_support'], [1])
  # Level 2: (1, 10) holds items 0 and 2, (1, 11) item 1; (2, 12) is tail-only.
  np.testing.assert_array_equal(levels[1]['head_support'], [7, 3])
  np.testing.assert_array_equal(levels[1]['tail_support'], [1])
  # Level 3: item 1 has no third token; (1, 10, 21) and (2, 12, 22) are tail-only.
  np.testing.assert_array_equal(levels[2]['head_support'], [5])
  np.testing.assert_array_equal(levels[2]['tail_support'], [2, 1])


def test_winners_against_distractors_only_counts_missed_tail_targets():
  is_head = np.array([True, True, True, False, False])
  item_tokens = np.array([[1, 10], [1, 11], [2, 12], [1, 13], [2, 14]])
  distractors = np.array([[0, 0], [0, 0], [0, 0], [1, 2], [0, 1]])
  top = np.array([[0, 1], [4, 0], [1, 2]])  # users' top 2
  targets = np.array([3, 4, 0])  # a missed tail target, a hit tail target, a head target
  hit = np.array([False, True, False])
  popularity_rank = np.array([4, 0, 1, 2, 3])  # item 1 the most popular
  w = tail_diagnosis.winners_vs_distractors(top, targets, hit, is_head, distractors,
                                            item_tokens, popularity_rank)
  # Only user 0 counts: of its top 2 (items 0, 1) item 1 is a distractor of item 3, and of
  # its distractors (1, 2) item 1 made the top 2; item 0 shares the first token with item 3.
  # Ranks of the top 2: 4 and 0 (median 2); of the distractors: 0 and 1 (median 0.5).
  assert w == {'missed': 1, 'distractor_share': 0.5, 'distractors_in_top': 0.5,
               'head_share': 1.0, 'top50_share': 1.0, 'winner_rank': 2.0,
               'distractor_rank': 0.5, 'top1_prefix': 1.0}
  assert tail_diagnosis.winners_vs_distractors(top, targets, np.ones(3, bool), is_head,
                                               distractors, item_tokens,
                                               popularity_rank) == {'missed': 0}


def test_common_prefix_never_matches_padding():
  a = np.array([[1, 2, -1], [1, 2, 3]])
  b = np.array([[1, 2, -1], [1, 5, 3]])
  np.testing.assert_array_equal(tail_diagnosis.common_prefix(a, b), [2, 1])
