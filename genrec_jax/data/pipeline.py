"""Batches: a deterministic, checkpointable training iterator and evaluation batches.

Training examples are the per-prefix examples of `Dataset.train_examples` (each training
item with the items before it, capped at max_history). The iterator is a grain pipeline:
shuffle with the run's seed, repeat, keep this process's share, batch. Its state
(`get_state()` / `set_state()`) goes into checkpoints, so a resumed run sees exactly the
batches an uninterrupted one would. Every process builds the same shuffled stream and keeps
every process_count-th example, so processes read disjoint data.
"""

from __future__ import annotations

from typing import Callable

import grain
import numpy as np

from genrec_jax.data.dataset import Dataset
from genrec_jax.data.dataset import prefix_histories


KINDS = ('prefix',)


def num_train_examples(dataset: Dataset, kind: str = 'prefix') -> int:
  _check_kind(kind)
  return len(dataset.train_examples()[0])


def train_iterator(dataset: Dataset, *, batch_size: int, seed: int,
                   num_epochs: int | None = None, process_index: int = 0,
                   process_count: int = 1, kind: str = 'prefix',
                   transform: Callable[[dict], dict] | None = None) -> grain.DatasetIterator:
  """Batches of {'user', 'history', 'history_len', 'target'}; batch_size is per process.

  `transform` (a method's `prepare_batch`) turns each numpy batch into the method's inputs.
  """
  _check_kind(kind)
  users, positions = dataset.train_examples()
  if len(users) == 0:
    raise ValueError(f'{dataset.name}: no training examples (every user has < 4 items).')
  examples = grain.MapDataset.range(len(users)).shuffle(seed=seed).repeat(num_epochs)
  examples = examples[process_index::process_count]

  def to_batch(index: np.ndarray) -> dict[str, np.ndarray]:
    history, length, target = prefix_histories(dataset, positions[index], users[index])
    batch = {'user': users[index].astype(np.int32), 'history': history,
             'history_len': length, 'target': target}
    return transform(batch) if transform else batch

  return iter(examples.batch(batch_size, drop_remainder=True).map(to_batch)
              .to_iter_dataset())


def _check_kind(kind: str) -> None:
  if kind not in KINDS:
    raise ValueError(f'config.train.example_kind={kind!r}: use one of {KINDS}.')


def eval_batches(dataset: Dataset, split: str, batch_size: int, mask_history: bool):
  """Yields (batch, num_real_rows) over all users; the last batch is padded to batch_size
  (by repeating user 0) so jitted predictors compile once."""
  history, length, targets = dataset.histories(split)
  _, end = dataset.split_targets(split)
  for start in range(0, dataset.num_users, batch_size):
    users = np.arange(start, min(start + batch_size, dataset.num_users))
    n = len(users)
    users = np.pad(users, (0, batch_size - n))
    batch = {'user': users.astype(np.int32), 'history': history[users],
             'history_len': length[users], 'target': targets[users]}
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
