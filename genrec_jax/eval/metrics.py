"""Next-item recommendation metrics (leave-one-out), computed on host in numpy.

Every test user u in U has exactly one target item t(u). Item ids are ints in
[0, I). A recommendation list is one row of `topk: int [U, Kmax]`, best first;
-1 marks an empty slot: it is never a hit and never an item (it falls in no
group, adds no popularity, is not covered), but denominators written K·|U|
stay K·|U|. topK(u) is the first K columns of u's row. Rows are expected to be
duplicate-free; if an item repeats, each slot counts separately and the rank is
that of its first occurrence.

Ranks (0-based, rank 0 = best):
  Full ranking:  rank(u) = position of t(u) in u's row, or NOT_FOUND if absent.
  Sampled:       rank(u) = #{negatives n : score(n) >= score(t(u))} among 1
                 positive and N sampled negatives. Ties count AGAINST the
                 positive, so a model that scores everything equally gets rank
                 N (a miss for every K <= N), not rank 0.

Accuracy, for a user set S (all users, or those whose target is head / tail):
  hr@K        = (1/|S|) Σ_{u∈S} [rank(u) < K]
  ndcg@K      = (1/|S|) Σ_{u∈S} [rank(u) < K] / log2(rank(u) + 2)
  hr@K/group{g} is hr@K over users whose target is in popularity group g.
  An empty S gives nan.

Popularity, with c(i) the training interaction count of item i and a partition
of the items into groups (head/tail, or the popularity groups):
  GH_G        = Σ_{i∈G} c(i) / Σ_i c(i)                (share of training data)
  GR_G@K      = Σ_u |topK(u) ∩ G| / (K·|U|)            (share of slots)
  GU_G@K      = GR_G@K − GH_G
  MGU@K       = (1/#groups) Σ_G |GU_G@K|
  DGU@K       = max_G GU_G@K − min_G GU_G@K
  Because empty slots fall in no group, Σ_G GU_G@K = −(empty slots)/(K·|U|).
  arp@K       = (1/|U|) Σ_u mean_{i ∈ topK(u), i valid} c(i); a user whose
                top-K has no valid item contributes 0.
  head_slots@K, tail_slots@K, empty_slots@K = number of top-K slots over all
                users holding a head item, a tail item, nothing.
  coverage@K  = |∪_u topK(u) \\ {-1}| / I
  entropy@K   = −Σ_i p_i ln p_i, p_i = (slots holding i) / (valid slots); 0 if
                there are no valid slots.

CNS (Comprehensively Normalised Score, from the Ghost paper) over a set of
compared runs R, at cut-off k:
  up(m, r)    = (m(r) − min_R m) / (max_R m − min_R m)   for hr@k, hr@k/tail,
                                                          ndcg@k, ndcg@k/tail
  down(m, r)  = (max_R m − m(r)) / (max_R m − min_R m)   for mgu@k, arp@k
  CNS(r)      = mean of those six normalised scores; a metric with
                max_R m == min_R m gives every run 1.0 for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

# Rank of a target that is not in the recommendation list; larger than any K.
NOT_FOUND = int(np.iinfo(np.int32).max)

EMPTY_SLOT = -1

# (key template, higher is better) for the six CNS components.
_CNS_METRICS = (
    ('hr@{k}', True),
    ('hr@{k}/tail', True),
    ('ndcg@{k}', True),
    ('ndcg@{k}/tail', True),
    ('mgu@{k}', False),
    ('arp@{k}', False),
)


def _as_int_array(name: str, x, ndim: int) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim != ndim or not np.issubdtype(x.dtype, np.integer):
    raise ValueError(
        f'{name} must be a {ndim}-D integer array, got shape {x.shape} and '
        f'dtype {x.dtype}.')
  return x.astype(np.int64, copy=False)


def _as_bool_array(name: str, x, length: int) -> np.ndarray:
  x = np.asarray(x)
  # Bool only: an int array here is usually a list of item ids passed by mistake.
  if x.dtype != np.bool_ or x.shape != (length,):
    raise ValueError(
        f'{name} must be a bool array of shape ({length},), got shape '
        f'{x.shape} and dtype {x.dtype}.')
  return x


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
  ks = tuple(int(k) for k in ks)
  if not ks or min(ks) < 1:
    raise ValueError(f'ks must be a non-empty list of positive ints, got {ks}.')
  return ks


def _check_ranks(ranks) -> np.ndarray:
  ranks = _as_int_array('ranks', ranks, 1)
  if ranks.size and ranks.min() < 0:
    raise ValueError('ranks must be >= 0 (0-based; NOT_FOUND for a miss).')
  return ranks


def _check_topk(topk, num_items: int | None = None) -> np.ndarray:
  topk = _as_int_array('topk', topk, 2)
  if topk.size:
    high = '' if num_items is None else f' and < num_items={num_items}'
    if topk.min() < EMPTY_SLOT or (num_items is not None and topk.max() >= num_items):
      raise ValueError(
          f'topk entries must be item ids >= 0{high}, or -1 for an empty slot; '
          f'got values in [{topk.min()}, {topk.max()}].')
  return topk


def _check_item_counts(item_counts) -> np.ndarray:
  item_counts = np.asarray(item_counts)
  if item_counts.ndim != 1 or not np.issubdtype(item_counts.dtype, np.number):
    raise ValueError(
        f'item_counts must be a 1-D numeric array, got shape {item_counts.shape} '
        f'and dtype {item_counts.dtype}.')
  item_counts = item_counts.astype(np.float64)
  if (item_counts.size == 0 or not np.isfinite(item_counts).all() or
      item_counts.min() < 0 or item_counts.sum() <= 0):
    raise ValueError(
        'item_counts must be finite and non-negative with a positive total (it '
        'is the training interaction count per item).')
  return item_counts


def ranks_from_topk(topk, targets) -> np.ndarray:
  """0-based position of each user's target in its top-K row, or NOT_FOUND.

  Args:
    topk: int [U, Kmax] recommended item ids, best first; -1 = empty slot.
    targets: int [U] target item id per user (>= 0).

  Returns:
    int64 [U] ranks; the first occurrence counts if an item repeats.
  """
  topk = _check_topk(topk)
  targets = _as_int_array('targets', targets, 1)
  if targets.shape[0] != topk.shape[0]:
    raise ValueError(
        f'targets has {targets.shape[0]} users but topk has {topk.shape[0]}.')
  if targets.size and targets.min() < 0:
    raise ValueError('targets must be item ids >= 0.')
  hits = topk == targets[:, None]
  found = hits.any(axis=1)
  return np.where(found, hits.argmax(axis=1), NOT_FOUND).astype(np.int64)


def ranks_from_sampled_scores(pos_scores, neg_scores) -> np.ndarray:
  """Rank of the positive among itself and N sampled negatives.

  rank = #{negatives with score >= positive score}: ties are broken against the
  positive, so a constant-score model gets rank N (never a hit for K <= N).
  NaN scores are rejected because they would compare as "below" everything
  and silently look like a perfect prediction.

  Args:
    pos_scores: float [U] score of each user's target.
    neg_scores: float [U, N] scores of the N sampled negatives.

  Returns:
    int64 [U] ranks in [0, N].
  """
  pos_scores = np.asarray(pos_scores, dtype=np.float64)
  neg_scores = np.asarray(neg_scores, dtype=np.float64)
  if pos_scores.ndim != 1 or neg_scores.ndim != 2 or (
      neg_scores.shape[0] != pos_scores.shape[0]):
    raise ValueError(
        f'Expected pos_scores [U] and neg_scores [U, N], got {pos_scores.shape} '
        f'and {neg_scores.shape}.')
  if np.isnan(pos_scores).any() or np.isnan(neg_scores).any():
    raise ValueError('Scores contain NaN; ranks would be meaningless.')
  return (neg_scores >= pos_scores[:, None]).sum(axis=1).astype(np.int64)


def _hr_ndcg(ranks: np.ndarray, k: int) -> tuple[float, float]:
  if ranks.size == 0:
    return float('nan'), float('nan')
  hit = ranks < k
  # Clip before the log so NOT_FOUND ranks never reach it.
  gain = np.where(hit, 1.0 / np.log2(np.minimum(ranks, k) + 2.0), 0.0)
  return float(hit.mean()), float(gain.mean())


def accuracy_metrics(ranks, target_is_tail, ks: Sequence[int]) -> dict[str, float]:
  """HR@K and NDCG@K over all users and over head-target / tail-target users.

  Works for full ranking (ranks_from_topk) and sampled (ranks_from_sampled_scores)
  ranks alike. A subset with no users gives nan.

  Args:
    ranks: int [U] 0-based ranks, NOT_FOUND for a miss.
    target_is_tail: bool [U] whether each user's target is a tail item.
    ks: cut-offs.

  Returns:
    'hr@K', 'ndcg@K', 'hr@K/head', 'ndcg@K/head', 'hr@K/tail', 'ndcg@K/tail'.
  """
  ranks = _check_ranks(ranks)
  target_is_tail = _as_bool_array('target_is_tail', target_is_tail, ranks.shape[0])
  subsets = (('', ranks), ('/head', ranks[~target_is_tail]),
             ('/tail', ranks[target_is_tail]))
  out = {}
  for k in _check_ks(ks):
    for suffix, subset in subsets:
      out[f'hr@{k}{suffix}'], out[f'ndcg@{k}{suffix}'] = _hr_ndcg(subset, k)
  return out


def group_hit_rates(ranks, target_group, num_groups: int,
                    ks: Sequence[int]) -> dict[str, float]:
  """'hr@K/group{g}': hit rate over users whose target is in group g (nan if none)."""
  ranks = _check_ranks(ranks)
  target_group = _as_int_array('target_group', target_group, 1)
  if target_group.shape != ranks.shape:
    raise ValueError(
        f'target_group shape {target_group.shape} != ranks shape {ranks.shape}.')
  if target_group.size and (target_group.min() < 0 or
                            target_group.max() >= num_groups):
    raise ValueError(f'target_group values must be in [0, {num_groups}).')
  users_per_group = np.bincount(target_group, minlength=num_groups)
  out = {}
  for k in _check_ks(ks):
    hits_per_group = np.bincount(
        target_group, weights=(ranks < k).astype(np.float64),
        minlength=num_groups)
    with np.errstate(invalid='ignore', divide='ignore'):
      rates = hits_per_group / users_per_group
    for g in range(num_groups):
      out[f'hr@{k}/group{g}'] = float(rates[g])
  return out


def _group_shares(item_counts: np.ndarray, item_group: np.ndarray,
                  num_groups: int) -> np.ndarray:
  """GH_G for every group: share of training interactions on its items."""
  return np.bincount(item_group, weights=item_counts,
                     minlength=num_groups) / item_counts.sum()


def _gu(top: np.ndarray, item_group: np.ndarray, num_groups: int,
        group_share: np.ndarray) -> np.ndarray:
  """GU_G@K = GR_G@K - GH_G, for top = the first K columns of topk."""
  items = top[top != EMPTY_SLOT]
  slots_per_group = np.bincount(item_group[items], minlength=num_groups)
  return slots_per_group / top.size - group_share


def _check_groups(item_group, num_items: int,
                  num_groups: int | None) -> tuple[np.ndarray, int]:
  item_group = _as_int_array('item_group', item_group, 1)
  if item_group.shape != (num_items,):
    raise ValueError(
        f'item_group must have shape ({num_items},), got {item_group.shape}.')
  if num_groups is None:
    num_groups = int(item_group.max()) + 1
  if item_group.min() < 0 or item_group.max() >= num_groups:
    raise ValueError(f'item_group values must be in [0, {num_groups}).')
  return item_group, num_groups


def _check_cutoffs(ks: Sequence[int], topk: np.ndarray) -> tuple[int, ...]:
  ks = _check_ks(ks)
  num_users, max_k = topk.shape
  if num_users == 0:
    raise ValueError('topk has no users.')
  if max(ks) > max_k:
    raise ValueError(
        f'topk has {max_k} columns but the largest cut-off is K={max(ks)}; '
        f'recommend at least {max(ks)} items per user.')
  return ks


def gu_per_group(topk, item_counts, item_group, k: int,
                 num_groups: int | None = None) -> np.ndarray:
  """GU_G@K = GR_G@K - GH_G for every group G (float [num_groups]).

  Positive: the group gets more top-K slots than its share of training data.
  The values sum to -(empty top-K slots) / (K·|U|).
  """
  item_counts = _check_item_counts(item_counts)
  topk = _check_topk(topk, item_counts.shape[0])
  item_group, num_groups = _check_groups(item_group, item_counts.shape[0],
                                         num_groups)
  (k,) = _check_cutoffs((k,), topk)
  return _gu(topk[:, :k], item_group, num_groups,
             _group_shares(item_counts, item_group, num_groups))


def _mgu_dgu(gu: np.ndarray) -> tuple[float, float]:
  return float(np.abs(gu).mean()), float(gu.max() - gu.min())


def popularity_metrics(topk, item_counts, is_head, item_group,
                       ks: Sequence[int],
                       num_groups: int | None = None) -> dict[str, float]:
  """Popularity-bias, exposure and diversity metrics of the top-K lists.

  See the module docstring for the formulas.

  Args:
    topk: int [U, Kmax] recommended item ids, best first; -1 = empty slot.
    item_counts: [I] training interaction count per item (>= 0, sum > 0).
    is_head: bool [I] head-item mask (tail = not head).
    item_group: int [I] popularity group of each item, in [0, num_groups).
    ks: cut-offs, each <= Kmax.
    num_groups: number of popularity groups; defaults to max(item_group) + 1.

  Returns:
    Per K: 'mgu@K', 'dgu@K' (head/tail), 'mgu_groups@K', 'dgu_groups@K',
    'arp@K', 'head_slots@K', 'tail_slots@K', 'empty_slots@K', 'coverage@K',
    'entropy@K'.
  """
  item_counts = _check_item_counts(item_counts)
  num_items = item_counts.shape[0]
  topk = _check_topk(topk, num_items)
  is_head = _as_bool_array('is_head', is_head, num_items)
  item_group, num_groups = _check_groups(item_group, num_items, num_groups)
  ks = _check_cutoffs(ks, topk)

  # Head/tail as a two-group partition: group 0 = head, group 1 = tail.
  head_tail_group = np.where(is_head, 0, 1)
  head_tail_share = _group_shares(item_counts, head_tail_group, 2)
  group_share = _group_shares(item_counts, item_group, num_groups)

  out = {}
  for k in ks:
    top = topk[:, :k]
    valid = top != EMPTY_SLOT
    items = top[valid]  # every valid slot, row-major
    out[f'mgu@{k}'], out[f'dgu@{k}'] = _mgu_dgu(
        _gu(top, head_tail_group, 2, head_tail_share))
    out[f'mgu_groups@{k}'], out[f'dgu_groups@{k}'] = _mgu_dgu(
        _gu(top, item_group, num_groups, group_share))

    slot_counts = np.where(valid, item_counts[np.where(valid, top, 0)], 0.0)
    valid_per_user = valid.sum(axis=1)
    per_user_arp = slot_counts.sum(axis=1) / np.maximum(valid_per_user, 1)
    out[f'arp@{k}'] = float(per_user_arp.mean())

    num_head = int(is_head[items].sum())
    out[f'head_slots@{k}'] = float(num_head)
    out[f'tail_slots@{k}'] = float(items.size - num_head)
    out[f'empty_slots@{k}'] = float(top.size - items.size)

    item_freq = np.bincount(items, minlength=num_items)
    out[f'coverage@{k}'] = float(np.count_nonzero(item_freq) / num_items)
    p = item_freq[item_freq > 0] / max(items.size, 1)
    out[f'entropy@{k}'] = float(-(p * np.log(p)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0
  return out


def compute_all(topk, targets, item_counts, is_head, item_group,
                ks: Sequence[int] = (1, 5, 10, 20),
                num_groups: int | None = None) -> dict[str, float]:
  """All full-ranking metrics for one evaluation.

  Args:
    topk: int [U, Kmax] recommended item ids, best first; -1 = empty slot.
    targets: int [U] held-out target item per user, in [0, I).
    item_counts: [I] training interaction count per item.
    is_head: bool [I] head-item mask.
    item_group: int [I] popularity group per item.
    ks: cut-offs; max(ks) must be <= Kmax.
    num_groups: number of popularity groups; defaults to max(item_group) + 1.

  Returns:
    accuracy_metrics, popularity_metrics and group_hit_rates keys, plus
    'num_users' and 'num_tail_users' (as floats).
  """
  num_items = _check_item_counts(item_counts).shape[0]
  topk = _check_topk(topk, num_items)
  targets = _as_int_array('targets', targets, 1)
  if targets.shape[0] != topk.shape[0]:
    raise ValueError(
        f'targets has {targets.shape[0]} users but topk has {topk.shape[0]}.')
  if targets.size and (targets.min() < 0 or targets.max() >= num_items):
    raise ValueError(
        f'targets must be item ids in [0, {num_items}), got values in '
        f'[{targets.min()}, {targets.max()}].')
  # Validates everything else (shapes, groups, ks vs Kmax) before we index.
  out = popularity_metrics(topk, item_counts, is_head, item_group, ks,
                           num_groups)
  item_group, num_groups = _check_groups(item_group, num_items, num_groups)
  ranks = ranks_from_topk(topk, targets)
  target_is_tail = ~np.asarray(is_head)[targets]
  out.update(accuracy_metrics(ranks, target_is_tail, ks))
  out.update(group_hit_rates(ranks, item_group[targets], num_groups, ks))
  out['num_users'] = float(targets.shape[0])
  out['num_tail_users'] = float(target_is_tail.sum())
  return out


def cns(rows: Mapping[str, Mapping[str, float]], k: int) -> dict[str, float]:
  """Comprehensively Normalised Score of each run among the compared runs.

  Mean of six min-max normalised metrics (see module docstring): hr@k,
  hr@k/tail, ndcg@k, ndcg@k/tail (higher is better) and mgu@k, arp@k (lower is
  better). If every run has the same value of a metric, each run gets 1.0 for
  it. The score is relative: adding or removing a run changes everyone's CNS.

  Args:
    rows: run name -> its metrics (as returned by compute_all).
    k: cut-off.

  Returns:
    run name -> CNS in [0, 1].
  """
  if not rows:
    raise ValueError('cns needs at least one run.')
  names = list(rows)
  total = np.zeros(len(names))
  for template, higher_is_better in _CNS_METRICS:
    key = template.format(k=k)
    values = []
    for name in names:
      if key not in rows[name]:
        raise ValueError(
            f'cns: run {name!r} has no {key!r}; each row needs '
            f'{[t.format(k=k) for t, _ in _CNS_METRICS]}.')
      value = float(rows[name][key])
      if not np.isfinite(value):
        raise ValueError(f'cns: run {name!r} has non-finite {key!r} = {value}.')
      values.append(value)
    values = np.array(values)
    low, high = values.min(), values.max()
    if high == low:
      total += 1.0
    elif higher_is_better:
      total += (values - low) / (high - low)
    else:
      total += (high - values) / (high - low)
  return {name: float(s) for name, s in zip(names, total / len(_CNS_METRICS))}
