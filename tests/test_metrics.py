"""Tests for genrec_jax.eval.metrics: loop references, hand cases, invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest

from genrec_jax.eval import metrics

KS = (1, 3, 5, 10, 20)


# ---------------------------------------------------------------------------
# Slow reference: plain Python, one user and one slot at a time. It does not
# call the library, so a shared bug cannot hide.
# ---------------------------------------------------------------------------


def _reference_all(topk, targets, item_counts, is_head, item_group, num_groups,
                   ks):
  topk = [[int(x) for x in row] for row in topk]
  targets = [int(t) for t in targets]
  counts = [float(c) for c in item_counts]
  is_head = [bool(h) for h in is_head]
  item_group = [int(g) for g in item_group]
  num_users, num_items = len(topk), len(counts)
  total_count = sum(counts)

  ranks = []
  for row, target in zip(topk, targets):
    rank = metrics.NOT_FOUND
    for position, item in enumerate(row):
      if item == target:
        rank = position
        break
    ranks.append(rank)
  target_is_tail = [not is_head[t] for t in targets]

  def mean_or_nan(values):
    return sum(values) / len(values) if values else float('nan')

  out = {}
  for k in ks:
    for suffix, keep in (('', lambda u: True),
                         ('/head', lambda u: not target_is_tail[u]),
                         ('/tail', lambda u: target_is_tail[u])):
      users = [u for u in range(num_users) if keep(u)]
      out[f'hr@{k}{suffix}'] = mean_or_nan(
          [1.0 if ranks[u] < k else 0.0 for u in users])
      out[f'ndcg@{k}{suffix}'] = mean_or_nan(
          [1.0 / math.log2(ranks[u] + 2) if ranks[u] < k else 0.0
           for u in users])
    for g in range(num_groups):
      users = [u for u in range(num_users) if item_group[targets[u]] == g]
      out[f'hr@{k}/group{g}'] = mean_or_nan(
          [1.0 if ranks[u] < k else 0.0 for u in users])

    head_slots = tail_slots = empty_slots = 0
    group_slots = [0] * num_groups
    item_freq = {}
    arp_sum = 0.0
    for row in topk:
      user_counts = []
      for item in row[:k]:
        if item == -1:
          empty_slots += 1
          continue
        user_counts.append(counts[item])
        item_freq[item] = item_freq.get(item, 0) + 1
        group_slots[item_group[item]] += 1
        if is_head[item]:
          head_slots += 1
        else:
          tail_slots += 1
      arp_sum += sum(user_counts) / len(user_counts) if user_counts else 0.0
    num_slots = k * num_users

    head_share = sum(c for c, h in zip(counts, is_head) if h) / total_count
    gu_head_tail = [head_slots / num_slots - head_share,
                    tail_slots / num_slots - (1.0 - head_share)]
    gu_groups = []
    for g in range(num_groups):
      share = sum(c for c, ig in zip(counts, item_group) if ig == g) / total_count
      gu_groups.append(group_slots[g] / num_slots - share)
    for name, gu in (('', gu_head_tail), ('_groups', gu_groups)):
      out[f'mgu{name}@{k}'] = sum(abs(x) for x in gu) / len(gu)
      out[f'dgu{name}@{k}'] = max(gu) - min(gu)

    out[f'arp@{k}'] = arp_sum / num_users
    out[f'head_slots@{k}'] = float(head_slots)
    out[f'tail_slots@{k}'] = float(tail_slots)
    out[f'empty_slots@{k}'] = float(empty_slots)
    out[f'coverage@{k}'] = len(item_freq) / num_items
    valid_slots = sum(item_freq.values())
    out[f'entropy@{k}'] = -sum(
        n / valid_slots * math.log(n / valid_slots) for n in item_freq.values())
  out['num_users'] = float(num_users)
  out['num_tail_users'] = float(sum(target_is_tail))
  return out


def _reference_sampled_ranks(pos_scores, neg_scores):
  ranks = []
  for pos, negs in zip(pos_scores, neg_scores):
    ranks.append(sum(1 for n in negs if n >= pos))
  return ranks


def _random_case(seed):
  """Random evaluation with empty slots, absent targets and skewed counts."""
  rng = np.random.default_rng(seed)
  num_items = int(rng.integers(25, 60))
  num_users = 1 if seed == 0 else int(rng.integers(2, 40))  # seed 0: 1 user
  max_k = 20 + int(rng.integers(0, 3))
  num_groups = int(rng.integers(2, 6))
  topk = np.stack([rng.permutation(num_items)[:max_k] for _ in range(num_users)])
  topk[rng.random(topk.shape) < 0.2] = -1
  topk[0, 7:] = -1  # a short list
  if num_users > 2:
    topk[1] = -1  # a user with no recommendation at all
  targets = rng.integers(0, num_items, num_users)
  for u in range(num_users):
    valid = topk[u][topk[u] >= 0]
    if valid.size and rng.random() < 0.6:  # else the target is usually absent
      targets[u] = rng.choice(valid)
  item_counts = rng.zipf(1.5, num_items).clip(max=500)
  item_counts[rng.random(num_items) < 0.1] = 0
  is_head = item_counts >= np.quantile(item_counts, 0.8)
  item_group = rng.integers(0, num_groups, num_items)
  return topk, targets, item_counts, is_head, item_group, num_groups


@pytest.mark.parametrize('seed', range(8))
def test_compute_all_matches_loop_reference(seed):
  topk, targets, item_counts, is_head, item_group, num_groups = _random_case(seed)
  got = metrics.compute_all(topk, targets, item_counts, is_head, item_group,
                            ks=KS, num_groups=num_groups)
  want = _reference_all(topk, targets, item_counts, is_head, item_group,
                        num_groups, KS)
  assert set(got) == set(want)
  for key, value in want.items():
    assert isinstance(got[key], float), key
    np.testing.assert_allclose(got[key], value, rtol=1e-12, atol=1e-12,
                               err_msg=key)


def test_random_cases_exercise_edge_cases():
  # Guards the reference test against a generator that stops covering things.
  misses = empty = nan_subsets = 0
  for seed in range(8):
    topk, targets, *_ = _random_case(seed)
    ranks = metrics.ranks_from_topk(topk, targets)
    misses += int((ranks == metrics.NOT_FOUND).sum())
    empty += int((topk == -1).sum())
    got = metrics.compute_all(*_random_case(seed)[:5], ks=KS)
    nan_subsets += sum(math.isnan(v) for v in got.values())
  assert misses > 0 and empty > 0 and nan_subsets > 0


@pytest.mark.parametrize('seed', range(4))
def test_sampled_ranks_match_loop_reference(seed):
  rng = np.random.default_rng(seed)
  # Few distinct values so that ties are frequent.
  pos = rng.integers(0, 4, 30).astype(np.float32)
  neg = rng.integers(0, 4, (30, 9)).astype(np.float32)
  np.testing.assert_array_equal(metrics.ranks_from_sampled_scores(pos, neg),
                                _reference_sampled_ranks(pos, neg))


# ---------------------------------------------------------------------------
# Hand-computed case: 3 users, 6 items, top-5 lists.
# ---------------------------------------------------------------------------

# Training counts c = [8, 6, 3, 2, 1, 0], total 20. Head = items {0, 1}
# (share 14/20 = 0.7), tail = {2..5} (share 0.3). Popularity groups:
# g0 = {0, 1} (0.7), g1 = {2, 3} (5/20 = 0.25), g2 = {4, 5} (1/20 = 0.05).
_HAND_COUNTS = np.array([8, 6, 3, 2, 1, 0])
_HAND_IS_HEAD = np.array([True, True, False, False, False, False])
_HAND_GROUP = np.array([0, 0, 1, 1, 2, 2])
_HAND_TOPK = np.array([
    [0, 1, 2, 3, 4],     # target 1 (head, g0): rank 1
    [2, 0, -1, 5, 3],    # target 4 (tail, g2): absent
    [4, 5, 0, -1, -1],   # target 4 (tail, g2): rank 0
])
_HAND_TARGETS = np.array([1, 4, 4])


def test_hand_case_accuracy():
  got = metrics.compute_all(_HAND_TOPK, _HAND_TARGETS, _HAND_COUNTS,
                            _HAND_IS_HEAD, _HAND_GROUP, ks=(1, 5))
  inv_log2_3 = 1 / math.log2(3)  # ndcg gain of rank 1
  want = {
      # K=1: only user 2 (rank 0) hits.
      'hr@1': 1 / 3, 'ndcg@1': 1 / 3,
      'hr@1/head': 0.0, 'ndcg@1/head': 0.0,
      'hr@1/tail': 1 / 2, 'ndcg@1/tail': 1 / 2,
      # K=5: user 0 hits at rank 1, user 2 at rank 0, user 1 misses.
      'hr@5': 2 / 3, 'ndcg@5': (inv_log2_3 + 1) / 3,
      'hr@5/head': 1.0, 'ndcg@5/head': inv_log2_3,
      'hr@5/tail': 1 / 2, 'ndcg@5/tail': 1 / 2,
      # Targets by group: g0 = {user 0}, g1 = nobody, g2 = {users 1, 2}.
      'hr@1/group0': 0.0, 'hr@1/group1': math.nan, 'hr@1/group2': 1 / 2,
      'hr@5/group0': 1.0, 'hr@5/group1': math.nan, 'hr@5/group2': 1 / 2,
      'num_users': 3.0, 'num_tail_users': 2.0,
  }
  for key, value in want.items():
    np.testing.assert_allclose(got[key], value, rtol=1e-12, err_msg=key)


def test_hand_case_popularity():
  got = metrics.compute_all(_HAND_TOPK, _HAND_TARGETS, _HAND_COUNTS,
                            _HAND_IS_HEAD, _HAND_GROUP, ks=(1, 5))
  want = {
      # K=1: slots [0, 2, 4] -> 1 head, 2 tail. GU_head = 1/3 - 0.7 = -11/30,
      # GU_tail = 2/3 - 0.3 = 11/30.
      'head_slots@1': 1.0, 'tail_slots@1': 2.0, 'empty_slots@1': 0.0,
      'mgu@1': 11 / 30, 'dgu@1': 22 / 30,
      # Groups: one slot each -> GU = 1/3 - (0.7, 0.25, 0.05)
      # = (-11/30, 2.5/30, 8.5/30).
      'mgu_groups@1': (11 + 2.5 + 8.5) / 30 / 3, 'dgu_groups@1': 19.5 / 30,
      'arp@1': (8 + 3 + 1) / 3,
      'coverage@1': 3 / 6,
      'entropy@1': math.log(3),
      # K=5: 15 slots, 3 empty, head items fill 4 (item 0 x3, item 1 x1).
      # GU_head = 4/15 - 0.7 = -6.5/15, GU_tail = 8/15 - 0.3 = 3.5/15.
      'head_slots@5': 4.0, 'tail_slots@5': 8.0, 'empty_slots@5': 3.0,
      'mgu@5': (6.5 + 3.5) / 15 / 2, 'dgu@5': (3.5 + 6.5) / 15,
      # Each group fills 4 slots -> GU = 4/15 - (0.7, 0.25, 0.05)
      # = (-6.5, 0.25, 3.25) / 15.
      'mgu_groups@5': (6.5 + 0.25 + 3.25) / 15 / 3,
      'dgu_groups@5': (3.25 + 6.5) / 15,
      # Per user: (8+6+3+2+1)/5 = 4, (3+8+0+2)/4 = 3.25, (1+0+8)/3 = 3.
      'arp@5': (4 + 3.25 + 3) / 3,
      'coverage@5': 1.0,
      # Item frequencies over 12 valid slots: item 0 x3, item 1 x1, others x2.
      'entropy@5': (3 / 12 * math.log(12 / 3) + 1 / 12 * math.log(12)
                    + 4 * (2 / 12) * math.log(12 / 2)),
  }
  for key, value in want.items():
    np.testing.assert_allclose(got[key], value, rtol=1e-12, err_msg=key)


def test_hand_case_gu_per_group():
  gu = metrics.gu_per_group(_HAND_TOPK, _HAND_COUNTS, _HAND_GROUP, k=5)
  np.testing.assert_allclose(gu, np.array([-6.5, 0.25, 3.25]) / 15, rtol=1e-12)


def test_all_empty_lists_have_zero_arp_and_entropy():
  topk = np.full((2, 3), -1)
  got = metrics.popularity_metrics(topk, _HAND_COUNTS, _HAND_IS_HEAD,
                                   _HAND_GROUP, ks=(3,))
  assert got['arp@3'] == 0.0
  assert got['entropy@3'] == 0.0
  assert got['coverage@3'] == 0.0
  assert got['empty_slots@3'] == 6.0
  # Nothing recommended: every GU is -GH, so MGU = mean share, DGU = 0.7 - 0.3.
  np.testing.assert_allclose(got['mgu@3'], 0.5)
  np.testing.assert_allclose(got['dgu@3'], 0.4)


# ---------------------------------------------------------------------------
# Ranks.
# ---------------------------------------------------------------------------


def test_ranks_from_topk():
  topk = np.array([[3, 1, 2], [-1, 5, 0], [4, 4, 1]])
  ranks = metrics.ranks_from_topk(topk, np.array([2, 7, 4]))
  np.testing.assert_array_equal(ranks, [2, metrics.NOT_FOUND, 0])


def test_sampled_ranks_break_ties_against_positive():
  pos = np.array([1.0, 1.0, 2.0, 0.0])
  neg = np.array([
      [1.0, 0.5, 1.5],   # one tie, one higher -> 2
      [0.0, 0.0, 0.0],   # all lower -> 0
      [2.0, 2.0, 2.0],   # all tied -> 3 (worst), not 0
      [-np.inf, 1.0, np.inf],  # infinities are ordinary scores -> 2
  ])
  np.testing.assert_array_equal(
      metrics.ranks_from_sampled_scores(pos, neg), [2, 0, 3, 2])


def test_sampled_ranks_reject_nan():
  with pytest.raises(ValueError, match='NaN'):
    metrics.ranks_from_sampled_scores(np.array([np.nan]), np.zeros((1, 3)))


def test_constant_score_model_never_hits():
  num_negatives = 99
  pos = np.full(50, 0.3)
  neg = np.full((50, num_negatives), 0.3)
  ranks = metrics.ranks_from_sampled_scores(pos, neg)
  got = metrics.accuracy_metrics(ranks, np.zeros(50, bool),
                                 ks=(1, 10, num_negatives, num_negatives + 1))
  for k in (1, 10, num_negatives):
    assert got[f'hr@{k}'] == 0.0 and got[f'ndcg@{k}'] == 0.0
  # K = N + 1 covers the whole candidate set, so everything is a hit.
  assert got[f'hr@{num_negatives + 1}'] == 1.0


# ---------------------------------------------------------------------------
# Invariants.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('seed', range(4))
def test_invariants(seed):
  topk, targets, item_counts, is_head, item_group, num_groups = _random_case(seed)
  got = metrics.compute_all(topk, targets, item_counts, is_head, item_group,
                            ks=KS, num_groups=num_groups)
  num_users = topk.shape[0]
  for suffix in ('', '/head', '/tail'):
    hrs = [got[f'hr@{k}{suffix}'] for k in KS]
    if math.isnan(hrs[0]):
      continue
    assert hrs == sorted(hrs), suffix  # hr@K is monotone in K
    for k in KS:
      assert got[f'ndcg@{k}{suffix}'] <= got[f'hr@{k}{suffix}'] + 1e-15
  for k in KS:
    slots = (got[f'head_slots@{k}'] + got[f'tail_slots@{k}'] +
             got[f'empty_slots@{k}'])
    assert slots == k * num_users
    # Head/tail GU sums to minus the share of empty slots, both via the public
    # helper and via the (mgu, dgu) pair it is summarised into.
    empty_share = got[f'empty_slots@{k}'] / (k * num_users)
    gu = metrics.gu_per_group(topk, item_counts, np.where(is_head, 0, 1), k)
    np.testing.assert_allclose(gu.sum(), -empty_share, atol=1e-12)
    np.testing.assert_allclose(np.abs(gu).mean(), got[f'mgu@{k}'], atol=1e-12)
    np.testing.assert_allclose(gu.max() - gu.min(), got[f'dgu@{k}'], atol=1e-12)
    gu_groups = metrics.gu_per_group(topk, item_counts, item_group, k,
                                     num_groups)
    np.testing.assert_allclose(gu_groups.sum(), -empty_share, atol=1e-12)
    assert 0.0 <= got[f'coverage@{k}'] <= 1.0
    assert got[f'entropy@{k}'] >= 0.0


def test_perfect_recommender():
  topk, targets, item_counts, is_head, item_group, _ = _random_case(3)
  # Put the target first and drop its other occurrence, if any.
  topk = np.where(topk == targets[:, None], -1, topk)
  topk[:, 0] = targets
  got = metrics.compute_all(topk, targets, item_counts, is_head, item_group,
                            ks=KS)
  for k in KS:
    for suffix in ('', '/head', '/tail'):
      if not math.isnan(got[f'hr@{k}{suffix}']):
        assert got[f'hr@{k}{suffix}'] == 1.0
        assert got[f'ndcg@{k}{suffix}'] == 1.0
  assert not math.isnan(got['hr@1/tail']) and not math.isnan(got['hr@1/head'])


def test_empty_subset_is_nan():
  got = metrics.accuracy_metrics(np.array([0, 3]), np.array([False, False]),
                                 ks=(5,))
  assert got['hr@5'] == 1.0 and got['hr@5/head'] == 1.0
  assert math.isnan(got['hr@5/tail']) and math.isnan(got['ndcg@5/tail'])


# ---------------------------------------------------------------------------
# CNS.
# ---------------------------------------------------------------------------


def _cns_row(hr, hr_tail, ndcg, ndcg_tail, mgu, arp):
  return {'hr@10': hr, 'hr@10/tail': hr_tail, 'ndcg@10': ndcg,
          'ndcg@10/tail': ndcg_tail, 'mgu@10': mgu, 'arp@10': arp,
          'hr@5': 123.0}  # extra keys are ignored


def test_cns_hand_case():
  rows = {
      'a': _cns_row(0.10, 0.02, 0.05, 0.01, 0.30, 100.0),
      'b': _cns_row(0.08, 0.04, 0.04, 0.01, 0.10, 50.0),
      'c': _cns_row(0.06, 0.03, 0.03, 0.01, 0.20, 75.0),
  }
  # Normalised (hr, hr/tail, ndcg, ndcg/tail [all equal -> 1], mgu, arp):
  # a: (1, 0, 1, 1, 0, 0)        -> 3/6
  # b: (0.5, 1, 0.5, 1, 1, 1)    -> 5/6
  # c: (0, 0.5, 0, 1, 0.5, 0.5)  -> 2.5/6
  got = metrics.cns(rows, k=10)
  assert list(got) == ['a', 'b', 'c']
  np.testing.assert_allclose([got['a'], got['b'], got['c']],
                             [3 / 6, 5 / 6, 2.5 / 6], rtol=1e-12)


def test_cns_single_run_scores_one():
  assert metrics.cns({'only': _cns_row(0.1, 0.1, 0.1, 0.1, 0.1, 1.0)},
                     k=10) == {'only': 1.0}


def test_cns_missing_key():
  rows = {'a': _cns_row(0.1, 0.1, 0.1, 0.1, 0.1, 1.0),
          'b': {'hr@10': 0.2}}
  with pytest.raises(ValueError, match=r"'b'.*'hr@10/tail'"):
    metrics.cns(rows, k=10)


# ---------------------------------------------------------------------------
# Validation.
# ---------------------------------------------------------------------------


def _hand_args(**overrides):
  args = dict(topk=_HAND_TOPK, targets=_HAND_TARGETS, item_counts=_HAND_COUNTS,
              is_head=_HAND_IS_HEAD, item_group=_HAND_GROUP, ks=(1, 5))
  args.update(overrides)
  return args


@pytest.mark.parametrize('overrides, message', [
    (dict(ks=(1, 10)), r'5 columns .* K=10'),
    (dict(ks=()), 'ks'),
    (dict(ks=(0, 5)), 'ks'),
    (dict(targets=np.array([1, 4, 6])), r'targets .* \[0, 6\)'),
    (dict(targets=np.array([1, 4])), 'targets has 2 users'),
    (dict(topk=_HAND_TOPK.astype(float)), 'topk .* integer'),
    (dict(topk=np.where(_HAND_TOPK == 5, 6, _HAND_TOPK)), 'topk entries'),
    (dict(topk=np.where(_HAND_TOPK == -1, -2, _HAND_TOPK)), 'topk entries'),
    (dict(is_head=_HAND_IS_HEAD.astype(int)), 'is_head .* bool'),
    (dict(is_head=_HAND_IS_HEAD[:5]), 'is_head'),
    (dict(item_group=_HAND_GROUP[:5]), 'item_group'),
    (dict(item_group=_HAND_GROUP - 1), 'item_group'),
    (dict(item_counts=np.zeros(6)), 'item_counts'),
    (dict(item_counts=-_HAND_COUNTS), 'item_counts'),
])
def test_compute_all_rejects_bad_input(overrides, message):
  with pytest.raises(ValueError, match=message):
    metrics.compute_all(**_hand_args(**overrides))
