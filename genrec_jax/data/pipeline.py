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
from genrec_jax.data.dataset import prefix_histories


KINDS = ('prefix', 'sequence')
TARGETS_PER_CHUNK = 32  # 'sequence' examples: targets per chunk (plus max_history context)


def num_train_examples(dataset: Dataset, kind: str = 'prefix',
                       targets_per_chunk: int = TARGETS_PER_CHUNK) -> int:
  _check_kind(kind)
  if kind == 'sequence':
    return len(sequence_chunks(dataset, targets_per_chunk)[0])
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


def train_iterator(dataset: Dataset, *, batch_size: int, seed: int,
                   num_epochs: int | None = None, process_index: int = 0,
                   process_count: int = 1, kind: str = 'prefix',
                   targets_per_chunk: int = TARGETS_PER_CHUNK) -> grain.DatasetIterator:
  """Training batches; batch_size is per process.

  kind 'prefix': {'user', 'history' [B, H] left-padded, 'target'} per example;
  kind 'sequence': {'user', 'items' [B, H + C], 'is_target' [B, H + C]} per chunk of a user's
  training sequence (C = targets_per_chunk, see `sequence_chunks`), for models that train
  every prefix in one causal pass.
  """
  _check_kind(kind)
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
