"""Batches: a deterministic, checkpointable training iterator and evaluation batches.

Training examples are the per-prefix examples of `Dataset.train_examples` (each training
item with the items before it, capped at max_history). The iterator is a grain pipeline:
shuffle with the run's seed, repeat, keep this process's share, batch. Its state
(`get_state()` / `set_state()`) goes into checkpoints, so a resumed run sees exactly the
batches an uninterrupted one would. Every process builds the same shuffled stream and keeps
every process_count-th example, so processes read disjoint data.
"""

from __future__ import annotations


import grain
import numpy as np

from genrec_jax.data.dataset import Dataset
from genrec_jax.data.dataset import gather_windows
from genrec_jax.data.dataset import prefix_histories


KINDS = ('prefix', 'sequence', 'window', 'masked')
TARGETS_PER_CHUNK = 32  # 'sequence' examples: targets per chunk (plus max_history context)
MASK = -2  # 'masked' examples: the id of a masked item (models/bert4rec.py reads it)
MASK_PROB = 0.2  # 'masked' examples: share of items masked (BERT4Rec's rate on MovieLens)


def num_train_examples(dataset: Dataset, kind: str = 'prefix',
                       targets_per_chunk: int = TARGETS_PER_CHUNK,
                       mask_prob: float = MASK_PROB) -> int:
  del mask_prob  # the same examples at every rate
  _check_kind(kind)
  if kind == 'sequence':
    return len(sequence_chunks(dataset, targets_per_chunk)[0])
  if kind in ('window', 'masked'):
    return len(_kind_windows(dataset, kind)[0]) * (2 if kind == 'masked' else 1)
  return len(dataset.train_examples()[0])


def sequence_chunks(dataset: Dataset, targets_per_chunk: int = TARGETS_PER_CHUNK):
  """Whole-sequence examples: (user, first item, first target, end) positions in seq_items.

  A user's training sequence s[0..n-1] has targets s[1..n-1]; chunk k trains the targets
  s[a:b], a = 1 + k·C, b = min(n, a + C), and holds the items s[max(0, a − H):b], so every
  target sees exactly the history a per-prefix example gives it (H = max_history).
  """
  n = np.maximum(dataset.seq_lengths - 2, 0)
  blocks = np.maximum(-(-(n - 1) // targets_per_chunk), 0)
  users = np.repeat(np.arange(dataset.num_users), blocks)
  block = np.arange(blocks.sum()) - np.repeat(np.cumsum(blocks) - blocks, blocks)
  first_target = 1 + block * targets_per_chunk
  end = np.minimum(n[users], first_target + targets_per_chunk)
  first_item = np.maximum(first_target - dataset.max_history, 0)
  offset = dataset.seq_offsets[users]
  return users, offset + first_item, offset + first_target, offset + end


def windows(dataset: Dataset, width: int, stride: int):
  """Windows over each user's training sequence, tiled from its end: (user, start, end)
  positions in seq_items, window k = s[max(0, n − k·stride − width) : n − k·stride] of the
  training sequence s[0..n-1], for every k leaving at least 2 items."""
  n = np.maximum(dataset.seq_lengths - 2, 0)
  count = np.where(n >= 2, (n - 2) // stride + 1, 0)
  users = np.repeat(np.arange(dataset.num_users), count)
  k = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
  end = n[users] - k * stride
  offset = dataset.seq_offsets[users]
  return users, offset + np.maximum(end - width, 0), offset + end


def _kind_windows(dataset: Dataset, kind: str):
  """'window': max_history inputs and the next item of each (consecutive windows share one
  item, so every training target is trained once); 'masked': max_history + 1 items, no
  item twice."""
  h = dataset.max_history
  return windows(dataset, h + 1, h if kind == 'window' else h + 1)


def mask_items(items: np.ndarray, rng: np.random.Generator, mask_prob: float,
               last_only: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """BERT4Rec's Cloze examples: (tokens, labels) [B, L] from right-aligned items [B, L]
  (-1 padding). Each real item is masked (token MASK, label = the item) with probability
  mask_prob, and the last item where a row masks none; rows with last_only [B] set mask
  only their last item (the next-item case, as BERT4Rec adds). Labels are -1 elsewhere."""
  real = items >= 0
  masked = real & (rng.random(items.shape) < mask_prob)
  last = np.zeros_like(masked)
  last[:, -1] = real[:, -1]
  masked = np.where(last_only[:, None] | ~masked.any(axis=1, keepdims=True), last, masked)
  return np.where(masked, MASK, items).astype(np.int32), np.where(masked, items,
                                                                  -1).astype(np.int32)


def train_iterator(dataset: Dataset, *, batch_size: int, seed: int,
                   num_epochs: int | None = None, process_index: int = 0,
                   process_count: int = 1, kind: str = 'prefix',
                   targets_per_chunk: int = TARGETS_PER_CHUNK,
                   mask_prob: float = MASK_PROB) -> grain.DatasetIterator:
  """Training batches; batch_size is per process.

  kind 'prefix': {'user', 'history' [B, H] left-padded, 'target'} per example;
  kind 'sequence': {'user', 'items' [B, H + C], 'is_target' [B, H + C]} per chunk of a user's
  training sequence (C = targets_per_chunk, see `sequence_chunks`), for models that train
  every prefix in one causal pass;
  kind 'window': {'user', 'history' [B, H], 'targets' [B, H]} per window of H + 1 items
  (`windows`), both right-aligned: targets[:, t] is the item after history[:, t] (-1 where
  none), for causal models with H learned positions (SASRec, GRU4Rec);
  kind 'masked': {'user', 'tokens' [B, H + 1], 'labels' [B, H + 1]} (`mask_items`): each
  window twice per epoch, once masked at random with mask_prob (drawn anew every epoch from
  the seed and the example's place in the stream) and once with only its last item masked.
  """
  _check_kind(kind)
  if kind in ('window', 'masked'):
    return _window_iterator(dataset, batch_size, seed, num_epochs, process_index,
                            process_count, kind, mask_prob)
  if kind == 'sequence':
    users, starts, first_targets, ends = sequence_chunks(dataset, targets_per_chunk)
  else:
    users, positions = dataset.train_examples()
  if len(users) == 0:
    raise ValueError(f'{dataset.name}: no training examples (every user has < 4 items).')
  examples = grain.MapDataset.range(len(users)).shuffle(seed=seed).repeat(num_epochs)
  examples = examples[process_index::process_count]
  width = dataset.max_history + targets_per_chunk

  def to_batch(index: np.ndarray) -> dict[str, np.ndarray]:
    if kind == 'sequence':
      # Items left-aligned, -1 after the end; is_target marks the items trained on.
      cols = np.arange(width)[None, :]
      length = (ends - starts)[index][:, None]
      items = np.where(cols < length, dataset.seq_items[
          np.minimum(starts[index][:, None] + cols, len(dataset.seq_items) - 1)], -1)
      is_target = (cols >= (first_targets - starts)[index][:, None]) & (cols < length)
      batch = {'user': users[index].astype(np.int32), 'items': items.astype(np.int32),
               'is_target': is_target}
    else:
      history, _, target = prefix_histories(dataset, positions[index], users[index])
      batch = {'user': users[index].astype(np.int32), 'history': history, 'target': target}
    return batch

  return iter(examples.batch(batch_size, drop_remainder=True).map(to_batch)
              .to_iter_dataset())


def _window_iterator(dataset, batch_size, seed, num_epochs, process_index, process_count,
                     kind, mask_prob):
  users, starts, ends = _kind_windows(dataset, kind)
  if len(users) == 0:
    raise ValueError(f'{dataset.name}: no training windows (every user has < 4 items).')
  num = len(users) * (2 if kind == 'masked' else 1)
  examples = grain.MapDataset.range(num).shuffle(seed=seed).repeat(num_epochs)
  examples = examples[process_index::process_count].batch(batch_size, drop_remainder=True)
  h = dataset.max_history

  def window_batch(index: np.ndarray) -> dict[str, np.ndarray]:
    w = index % len(users)
    history, _ = gather_windows(dataset.seq_items, starts[w], ends[w] - 1, h)
    targets, _ = gather_windows(dataset.seq_items, starts[w] + 1, ends[w], h)
    return {'user': users[w].astype(np.int32), 'history': history, 'targets': targets}

  def masked_batch(index: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    w = index % len(users)
    items, _ = gather_windows(dataset.seq_items, starts[w], ends[w], h + 1)
    tokens, labels = mask_items(items, rng, mask_prob, last_only=index >= len(users))
    return {'user': users[w].astype(np.int32), 'tokens': tokens, 'labels': labels}

  if kind == 'window':
    examples = examples.map(window_batch)
  else:
    examples = examples.random_map(masked_batch, seed=seed)
  return iter(examples.to_iter_dataset())


def _check_kind(kind: str) -> None:
  if kind not in KINDS:
    raise ValueError(f'config.train.example_kind={kind!r}: use one of {KINDS}.')


def eval_batches(dataset: Dataset, split: str, batch_size: int, mask_history: bool):
  """Yields (batch, num_real_rows) over all users; the last batch is padded to batch_size
  (by repeating user 0) so jitted predictors compile once."""
  history, _, targets = dataset.histories(split)
  _, end = dataset.split_targets(split)
  for start in range(0, dataset.num_users, batch_size):
    users = np.arange(start, min(start + batch_size, dataset.num_users))
    n = len(users)
    users = np.pad(users, (0, batch_size - n))
    batch = {'user': users.astype(np.int32), 'history': history[users],
             'target': targets[users]}
    if mask_history:
      batch['exclude'] = _past_items(dataset, users, end[users])
    yield batch, n


def _past_items(dataset: Dataset, users: np.ndarray, end: np.ndarray) -> np.ndarray:
  """All items each user interacted with before the target, [B, E] padded with -1.

  E is rounded up to a power of two so jitted predictors compile only a few shapes.
  """
  start = dataset.seq_offsets[users]
  width = 1 << int(max((end - start).max(), 1) - 1).bit_length()
  cols = np.arange(width)[None, :]
  index = np.minimum(start[:, None] + cols, len(dataset.seq_items) - 1)
  return np.where(cols < (end - start)[:, None], dataset.seq_items[index], -1).astype(np.int32)
