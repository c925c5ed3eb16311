"""SIDTable: every item's semantic ID, as codes per level, and its token sequence.

An item's SID is the codes of the levels it uses, in level order, optionally followed by EOS:
  tokens(i) = [level_offset[l] + codes[i, l] for each level l with codes[i, l] >= 0]
              + [eos_token] if ends_with_eos[i]
Level l has its own block of `level_sizes[l]` tokens; EOS is the one token after all blocks.
Token ids are local to the SID vocabulary [0, vocab_size); a model adds its own base offset.

This covers every tokenizer here: fixed-length RQ SIDs (all items use levels 0..L-1), Ghost's
SKT (head items use the head levels and end in EOS, tail items add tail levels), variable
length without inheritance (RQK-4-6), and the dedup level (the last level, used only by
items whose SIDs would otherwise collide, or by all items, as TIGER does).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from genrec_jax.data.raw import DataError


@dataclasses.dataclass(frozen=True)
class SIDTable:
  """Per-item codes. codes[i, l] = -1 where item i does not use level l.

  Attributes:
    codes: [I, num_levels] int32.
    level_sizes: codes per level (the dedup level's size is the largest collision group).
    ends_with_eos: [I] bool.
    level_names: one short name per level, e.g. ('a', 'b', 'c', 'dedup').
    info: how the table was made and its statistics (collision rate before dedup, ...).
  """

  codes: np.ndarray
  level_sizes: tuple[int, ...]
  ends_with_eos: np.ndarray
  level_names: tuple[str, ...]
  info: dict = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    self.validate()

  @property
  def num_items(self) -> int:
    return self.codes.shape[0]

  @property
  def num_levels(self) -> int:
    return self.codes.shape[1]

  @property
  def level_offsets(self) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(self.level_sizes)[:-1]]).astype(np.int32)

  @property
  def eos_token(self) -> int:
    return int(sum(self.level_sizes))

  @property
  def vocab_size(self) -> int:
    return self.eos_token + (1 if self.ends_with_eos.any() else 0)

  @property
  def lengths(self) -> np.ndarray:
    """[I] number of tokens of each item's SID, EOS included."""
    return ((self.codes >= 0).sum(1) + self.ends_with_eos).astype(np.int32)

  @property
  def max_len(self) -> int:
    return int(self.lengths.max())

  def item_tokens(self) -> np.ndarray:
    """[I, max_len] int32 token sequences, padded with -1 after each item's last token."""
    used = self.codes >= 0
    tokens = np.where(used, self.codes + self.level_offsets[None, :], -1)
    # Stable sort moves unused levels (False) to the end and keeps level order for the rest.
    order = np.argsort(~used, axis=1, kind='stable')
    tokens = np.take_along_axis(tokens, order, axis=1)
    out = np.full((self.num_items, self.max_len), -1, np.int32)
    width = min(self.num_levels, self.max_len)
    out[:, :width] = tokens[:, :width]
    rows = np.flatnonzero(self.ends_with_eos)
    out[rows, used[rows].sum(1)] = self.eos_token
    return out

  def token_names(self) -> list[str]:
    """Readable names of every SID token, e.g. '<a_17>', '<dedup_0>', '<sid_eos>'."""
    names = [f'<{name}_{code}>' for name, size in zip(self.level_names, self.level_sizes)
             for code in range(size)]
    return names + (['<sid_eos>'] if self.vocab_size > self.eos_token else [])

  def validate(self, source: str = 'SIDTable') -> None:
    """Checks shapes and ranges, that SIDs are unique and that the set is prefix-free."""
    codes = self.codes
    if codes.ndim != 2 or len(self.level_sizes) != codes.shape[1] or len(
        self.level_names) != codes.shape[1] or self.ends_with_eos.shape != codes.shape[:1]:
      raise DataError(f'{source}: codes {codes.shape}, level_sizes {self.level_sizes}, '
                      f'level_names {self.level_names} and ends_with_eos '
                      f'{self.ends_with_eos.shape} do not agree; rebuild the SIDs.')
    too_big = codes >= np.asarray(self.level_sizes)[None, :]
    if (codes < -1).any() or too_big.any():
      item, level = np.argwhere(too_big | (codes < -1))[0]
      raise DataError(f'{source}: item {item} has code {codes[item, level]} at level '
                      f'{level}, outside [0, {self.level_sizes[level]}); rebuild the SIDs.')
    if ((codes >= 0).sum(1) == 0).any():
      raise DataError(f'{source}: item {np.flatnonzero((codes >= 0).sum(1) == 0)[0]} has an '
                      'empty SID.')
    seen = {}
    sequences = [tuple(row[row >= 0]) for row in self.item_tokens()]
    for item, seq in enumerate(sequences):
      if seq in seen:
        raise DataError(f'{source}: items {seen[seq]} and {item} share the SID {seq}; '
                        'enable the dedup level (tokenize.dedup).')
      seen[seq] = item
    for item, seq in enumerate(sequences):  # prefix-free: no proper prefix is an item
      for cut in range(1, len(seq)):
        if seq[:cut] in seen:
          raise DataError(f'{source}: the SID of item {seen[seq[:cut]]} is a prefix of the '
                          f'SID of item {item}; end shorter SIDs with EOS.')

  # -------------------------------------------------------------------------- saving --

  def save(self, path: str) -> None:
    np.savez(path, codes=self.codes, level_sizes=np.asarray(self.level_sizes),
             ends_with_eos=self.ends_with_eos, level_names=np.asarray(self.level_names),
             info=np.asarray(json.dumps(self.info, default=float)))

  @classmethod
  def load(cls, path: str, num_items: int | None = None) -> SIDTable:
    """Loads and validates; num_items, if given, must match the dataset."""
    with np.load(path, allow_pickle=False) as f:
      table = cls(codes=f['codes'].astype(np.int32),
                  level_sizes=tuple(int(s) for s in f['level_sizes']),
                  ends_with_eos=f['ends_with_eos'].astype(bool),
                  level_names=tuple(str(n) for n in f['level_names']),
                  info=json.loads(str(f['info'])))
    if num_items is not None and table.num_items != num_items:
      raise DataError(f'{path}: SIDs for {table.num_items} items but the dataset has '
                      f'{num_items}; rebuild the SIDs for this dataset.')
    return table


def add_dedup_level(codes: np.ndarray, ends_with_eos: np.ndarray,
                    mode: str) -> tuple[np.ndarray, int, float]:
  """Appends a dedup level so that every item's SID is unique.

  mode 'colliding': only items whose SID is shared get a dedup code (0, 1, ... in item
  order within each group); 'all': every item gets one (TIGER); 'none': no level added.
  Returns (codes with the level appended unless 'none', dedup level size, collision rate),
  the collision rate being the share of items whose SID (before dedup) is shared.
  """
  keys = np.concatenate([codes, ends_with_eos[:, None].astype(codes.dtype)], axis=1)
  _, group, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
  group = group.reshape(-1)
  collision_rate = float((counts[group] > 1).mean())
  if mode == 'none':
    return codes, 0, collision_rate
  if mode not in ('colliding', 'all'):
    raise ValueError(f"dedup mode must be 'colliding', 'all' or 'none', got {mode!r}")
  order = np.argsort(group, kind='stable')
  rank_in_group = np.empty(len(group), np.int64)
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  rank_in_group[order] = np.arange(len(group)) - np.repeat(starts, counts)
  dedup = rank_in_group.astype(np.int32)
  if mode == 'colliding':
    dedup = np.where(counts[group] > 1, dedup, -1)
  return np.concatenate([codes, dedup[:, None]], axis=1), int(counts.max()), collision_rate
