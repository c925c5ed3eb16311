"""Preprocessing: raw interactions -> the leave-one-out `Dataset` every method uses.

Steps, in order (all numpy, deterministic):
  1. stable sort of each user's interactions by timestamp; among equal timestamps the raw
     file order is kept (MovieLens has many ties, and the tie rule decides which item is last);
  2. duplicate (user, item) pairs removed, keeping the earliest;
  3. iterative k-core on users and items (users need at least max(k, 3) interactions so that
     train, valid and test are all non-empty);
  4. id remap: users and items numbered 0.. in sorted order of their raw ids;
  5. leave-one-out split: test target = last item, valid target = second last, training
     sequence = items[:-2] (every prefix predicts its next item);
  6. training popularity (interaction counts in the training sequences), head items = the top
     `head_ratio` of items by that count (ties broken by item id), and `num_groups` equal-size
     popularity groups (group 0 = most popular).
Histories are capped at `max_history` items when batched, not here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import numpy as np

from genrec_jax.data.raw import DataError
from genrec_jax.data.raw import RawData

# Bump when preprocessing changes its output, so cached datasets are rebuilt.
PREPROCESS_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A preprocessed leave-one-out dataset. Item ids are 0..num_items-1.

  Attributes:
    name: dataset name.
    user_ids: [U] raw user ids; user u is user_ids[u].
    item_ids: [I] raw item ids; item i is item_ids[i].
    seq_items: [N] int32, every user's items in time order, users concatenated.
    seq_offsets: [U+1] int64, user u's items are seq_items[seq_offsets[u]:seq_offsets[u+1]].
    item_counts: [I] int64, training interactions per item (valid/test targets excluded).
    is_head: [I] bool, head items (top head_ratio by item_counts).
    item_group: [I] int32, popularity group, 0 = most popular.
    item_text: [I] list of {field: text} (empty dict where the source has no text).
    max_history: histories are cut to their last max_history items when batched.
    log: preprocessing record (dropped counts per reason, k-core rounds, sizes).
  """

  name: str
  user_ids: np.ndarray
  item_ids: np.ndarray
  seq_items: np.ndarray
  seq_offsets: np.ndarray
  item_counts: np.ndarray
  is_head: np.ndarray
  item_group: np.ndarray
  item_text: list[dict[str, str]]
  max_history: int
  log: dict

  @property
  def num_users(self) -> int:
    return len(self.user_ids)

  @property
  def num_items(self) -> int:
    return len(self.item_ids)

  @property
  def num_groups(self) -> int:
    return int(self.item_group.max()) + 1

  def sequence(self, user: int) -> np.ndarray:
    return self.seq_items[self.seq_offsets[user]:self.seq_offsets[user + 1]]

  def train_sequence(self, user: int) -> np.ndarray:
    return self.seq_items[self.seq_offsets[user]:self.seq_offsets[user + 1] - 2]

  @property
  def seq_lengths(self) -> np.ndarray:
    return np.diff(self.seq_offsets)

  def split_targets(self, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Returns (target item [U], end index of its history in seq_items [U]) for a split."""
    back = {'valid': 2, 'test': 1}.get(split)
    if back is None:
      raise ValueError(f"split must be 'valid' or 'test', got {split!r}")
    end = self.seq_offsets[1:] - back
    return self.seq_items[end], end

  def histories(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(histories [U, max_history] left-padded with -1, lengths [U], targets [U]).

    The valid history is the training sequence; the test history adds the valid item.
    """
    targets, end = self.split_targets(split)
    start = np.maximum(self.seq_offsets[:-1], end - self.max_history)
    return (*gather_windows(self.seq_items, start, end, self.max_history), targets)

  def train_examples(self) -> tuple[np.ndarray, np.ndarray]:
    """Per-prefix training examples: (user [M], target position in seq_items [M]).

    Every item of a training sequence except the first is a target; its history is the
    items before it within the user's sequence.
    """
    num = np.maximum(self.seq_lengths - 3, 0)  # training part minus its first item
    users = np.repeat(np.arange(self.num_users), num)
    rank_in_user = np.arange(num.sum()) - np.repeat(np.cumsum(num) - num, num)
    return users, self.seq_offsets[users] + 1 + rank_in_user

  def statistics(self) -> dict[str, float]:
    interactions = len(self.seq_items)
    train_total = self.item_counts.sum()
    return {
        'users': self.num_users,
        'items': self.num_items,
        'interactions': interactions,
        'sparsity': 1.0 - interactions / (self.num_users * self.num_items),
        'avg_length': interactions / self.num_users,
        'head_items': int(self.is_head.sum()),
        'head_share_of_train_interactions':
            float(self.item_counts[self.is_head].sum() / max(train_total, 1)),
        'test_targets_tail_share':
            float((~self.is_head[self.split_targets('test')[0]]).mean()),
    }


def gather_windows(values: np.ndarray, start: np.ndarray, end: np.ndarray,
                   width: int) -> tuple[np.ndarray, np.ndarray]:
  """Rows values[start[r]:end[r]] (at most `width` long), right-aligned, left-padded with -1."""
  lengths = end - start
  if np.any(lengths > width) or np.any(lengths < 0):
    raise ValueError('window longer than width or negative')
  cols = np.arange(width)[None, :] - (width - lengths)[:, None]  # column -> offset in window
  index = np.clip(start[:, None] + cols, 0, max(len(values) - 1, 0))
  out = np.where(cols >= 0, values[index], -1).astype(np.int32)
  return out, lengths.astype(np.int32)


def prefix_histories(dataset: Dataset, positions: np.ndarray,
                     users: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(histories, lengths, targets) for per-prefix examples from `train_examples`."""
  start = np.maximum(dataset.seq_offsets[users], positions - dataset.max_history)
  hist, lengths = gather_windows(dataset.seq_items, start, positions, dataset.max_history)
  return hist, lengths, dataset.seq_items[positions]


# ----------------------------------------------------------------------------------------
# Preprocessing.
# ----------------------------------------------------------------------------------------


def preprocess(raw: RawData, *, kcore: int = 5, max_history: int = 20,
               head_ratio: float = 0.2, num_groups: int = 5,
               dedup: bool = True) -> Dataset:
  """Raw interactions -> Dataset (see the module docstring for the steps)."""
  log = {'raw_interactions': len(raw.users), 'dropped_while_reading': dict(raw.dropped)}
  if len(raw.users) == 0:
    raise DataError(f'{raw.name}: no interactions in {raw.source_files}; check the files.')
  user_codes, user_raw = _codes(raw.users)
  item_codes, item_raw = _codes(raw.items)
  log.update(raw_users=len(user_raw), raw_items=len(item_raw))

  # 1. Stable time sort per user: lexsort keys are (last = primary) user, time, file order.
  order = np.lexsort((np.arange(len(user_codes)), raw.timestamps, user_codes))
  users, items = user_codes[order], item_codes[order]

  # 2. Duplicate (user, item) pairs: keep the first in time order.
  if dedup:
    pair = users.astype(np.int64) * len(item_raw) + items
    _, first = np.unique(pair, return_index=True)
    keep = np.zeros(len(pair), bool)
    keep[first] = True
    log['duplicates_removed'] = int((~keep).sum())
    users, items = users[keep], items[keep]

  # 3. Iterative k-core.
  min_user = max(kcore, 3)
  rounds = 0
  while True:
    ucount = np.bincount(users, minlength=len(user_raw))
    icount = np.bincount(items, minlength=len(item_raw))
    keep = (ucount[users] >= min_user) & (icount[items] >= kcore)
    if keep.all():
      break
    users, items = users[keep], items[keep]
    rounds += 1
  log['kcore_rounds'] = rounds
  log['kcore_removed_interactions'] = int(log['raw_interactions'] - log.get(
      'duplicates_removed', 0) - len(users))
  if len(users) == 0:
    raise DataError(
        f'{raw.name}: nothing is left after {kcore}-core filtering of '
        f'{log["raw_interactions"]} interactions from {raw.source_files}. '
        'Lower data.kcore or use a larger dataset.')

  # 4. Remap to 0..n-1 in sorted raw-id order (np.unique sorts; users stay grouped & ordered).
  kept_users, users = np.unique(users, return_inverse=True)
  kept_items, items = np.unique(items, return_inverse=True)
  log['kcore_removed_users'] = len(user_raw) - len(kept_users)
  log['kcore_removed_items'] = len(item_raw) - len(kept_items)
  offsets = np.zeros(len(kept_users) + 1, np.int64)
  np.cumsum(np.bincount(users, minlength=len(kept_users)), out=offsets[1:])
  item_ids = item_raw[kept_items]
  item_text = [raw.item_text.get(str(i), {}) for i in item_ids]
  log['items_without_text'] = sum(1 for t in item_text if not t)

  # 5./6. Split and popularity.
  seq_items = items.astype(np.int32)
  in_train = np.ones(len(seq_items), bool)
  in_train[offsets[1:] - 1] = False
  in_train[offsets[1:] - 2] = False
  counts = np.bincount(seq_items[in_train], minlength=len(item_ids)).astype(np.int64)
  if num_groups > len(item_ids):
    raise DataError(f'{raw.name}: data.num_groups={num_groups} is more than the '
                    f'{len(item_ids)} items left after filtering, so some popularity groups '
                    'would be empty and dilute mgu_groups; set data.num_groups <= '
                    f'{len(item_ids)}.')
  is_head, groups = popularity_split(counts, head_ratio, num_groups)
  return Dataset(
      name=raw.name, user_ids=user_raw[kept_users], item_ids=item_ids,
      seq_items=seq_items, seq_offsets=offsets, item_counts=counts, is_head=is_head,
      item_group=groups, item_text=item_text, max_history=max_history, log=log)


def popularity_split(counts: np.ndarray, head_ratio: float,
                     num_groups: int) -> tuple[np.ndarray, np.ndarray]:
  """Head mask (top ceil(head_ratio·I) by count) and equal-size groups (0 = most popular).

  Ties are broken by the lower item id, so the split is deterministic.
  """
  n = len(counts)
  rank = np.empty(n, np.int64)
  rank[np.argsort(-counts, kind='stable')] = np.arange(n)
  num_head = int(np.ceil(head_ratio * n))
  return rank < num_head, (rank * num_groups // n).astype(np.int32)


def _codes(raw_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  uniques, codes = np.unique(np.asarray(raw_ids).astype(str), return_inverse=True)
  return codes.astype(np.int64), uniques


# ----------------------------------------------------------------------------------------
# Cache in the workdir.
# ----------------------------------------------------------------------------------------


def fingerprint(*parts) -> str:
  return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def save(dataset: Dataset, path: str) -> None:
  tmp = path + '.tmp.npz'
  arrays = {f.name: getattr(dataset, f.name) for f in dataclasses.fields(Dataset)
            if isinstance(getattr(dataset, f.name), np.ndarray)}
  meta = dict(name=dataset.name, max_history=dataset.max_history, log=dataset.log,
              item_text=dataset.item_text)
  np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
  os.replace(tmp, path)  # atomic: a killed run never leaves half a cache


def load(path: str) -> Dataset:
  with np.load(path, allow_pickle=False) as f:
    meta = json.loads(str(f['meta']))
    arrays = {k: f[k] for k in f.files if k != 'meta'}
  return Dataset(**arrays, **meta)
