"""Prefix trie of item semantic-ID token sequences, as dense arrays for constrained decoding.

An item's semantic ID is a short sequence of language-model token ids (level l's codes live
in their own token block; variable-length SIDs, e.g. Ghost's SKT head items that end with an
EOS token, are allowed). A decoder constrained to this trie can only ever emit a real item.

Layout (node depth is implicit: a node reached after t tokens lives at step t):

  step_tokens [T_max, S] int32   token of slot s at step t. The tokens of a step are sorted
                                 ascending; S is the largest number of distinct tokens at any
                                 step. Unused slots repeat the step's last token (a valid id,
                                 so gathers stay in range) and are never allowed.
  children    [N, S] int32       for internal node n (root = 0) and slot s of n's step:
                                   >= 0           the child internal node,
                                   -(item + 2)    the token completes `item`,
                                   -1             not allowed.
                                 Leaves (completed items) need no rows.

A decoding step t for beams at nodes `nodes [B, K]` reads its mask with one gather,
`trie.children[nodes]` [B, K, S], and its tokens with `trie.step_tokens[t]` [S].

Memory is N * S * 4 bytes (N ≈ number of distinct proper prefixes): fine for catalogues of
~1e5 items with 256 codes per level. The leaves are numpy arrays; `jax.device_put(trie)`
once before decoding so the arrays are not copied to the device on every call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import numpy as np

NOT_ALLOWED = -1
PAD = -1


def encode_item(item: np.ndarray | int) -> np.ndarray | int:
  """Child value of a slot that completes `item`: -(item + 2), always < -1."""
  return -(item + 2)


def decode_item(child: np.ndarray | int) -> np.ndarray | int:
  """Inverse of encode_item; only meaningful where child < -1."""
  return -child - 2


@dataclasses.dataclass(frozen=True, eq=False)
class Trie:
  """Dense trie of item token sequences (a JAX pytree: arrays are leaves, ints static)."""

  step_tokens: np.ndarray | jax.Array  # [T_max, S] int32
  children: np.ndarray | jax.Array  # [num_internal_nodes, S] int32
  max_len: int  # T_max, the longest item sequence
  num_items: int

  @property
  def num_slots(self) -> int:
    return self.step_tokens.shape[1]

  @property
  def num_nodes(self) -> int:
    return self.children.shape[0]

  def _walk(self, tokens: Sequence[int] | np.ndarray) -> int:
    """Child value reached by following `tokens` from the root; NOT_ALLOWED if it falls off."""
    step_tokens = np.asarray(self.step_tokens)
    children = np.asarray(self.children)
    tokens = [int(x) for x in np.asarray(tokens).reshape(-1)]
    if not tokens or len(tokens) > self.max_len:
      return NOT_ALLOWED
    node = 0
    for step, token in enumerate(tokens):
      if node < 0:  # an item was completed before the sequence ended
        return NOT_ALLOWED
      # Unused slots repeat a valid token but have no child, so require both.
      slots = np.flatnonzero((step_tokens[step] == token) & (children[node] != NOT_ALLOWED))
      if slots.size == 0:
        return NOT_ALLOWED
      node = int(children[node, slots[0]])
    return node

  def item_of(self, tokens: Sequence[int] | np.ndarray) -> int:
    """The item whose full sequence is `tokens`, or -1 (a prefix, or not in the trie)."""
    child = self._walk(tokens)
    return int(decode_item(child)) if child < NOT_ALLOWED else -1

  def contains(self, tokens: Sequence[int] | np.ndarray) -> bool:
    """Whether `tokens` is exactly some item's full sequence (prefixes are not items)."""
    return self.item_of(tokens) >= 0

  def to_sequences(self) -> list[tuple[int, np.ndarray]]:
    """Every (item, tokens int32 [L]) in the trie, in lexicographic token order."""
    step_tokens = np.asarray(self.step_tokens)
    children = np.asarray(self.children)
    out = []
    # Depth-first; the stack is pushed in reverse so slots come out ascending.
    stack = [(0, ())]
    while stack:
      node, prefix = stack.pop()
      step = len(prefix)
      for slot in reversed(np.flatnonzero(children[node] != NOT_ALLOWED)):
        child = int(children[node, slot])
        path = prefix + (int(step_tokens[step, slot]),)
        if child < NOT_ALLOWED:
          out.append((int(decode_item(child)), path))
        else:
          stack.append((child, path))
    # Items at a node are found before its deeper subtrees are expanded: sort.
    out.sort(key=lambda pair: pair[1])
    return [(item, np.asarray(path, np.int32)) for item, path in out]


jax.tree_util.register_dataclass(
    Trie, data_fields=['step_tokens', 'children'], meta_fields=['max_len', 'num_items'])


def _to_padded(item_tokens: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
  """Item sequences as int64 [I, T_max], padded with PAD; validates values and padding."""
  if isinstance(item_tokens, np.ndarray) and item_tokens.ndim == 2:
    rows = [item_tokens]
    padded = item_tokens.astype(np.int64)
  else:
    rows = [np.asarray(seq).reshape(-1) for seq in item_tokens]
    width = max((row.size for row in rows), default=0)
    padded = np.full((len(rows), width), PAD, np.int64)
    for i, row in enumerate(rows):
      padded[i, :row.size] = row
  if any(row.size and not np.issubdtype(row.dtype, np.integer) for row in rows):
    raise ValueError('build_trie: item tokens must be integer arrays.')
  if padded.shape[0] == 0:
    raise ValueError('build_trie: no items given.')
  bad = padded < PAD
  if bad.any():
    i = int(np.argwhere(bad)[0, 0])
    raise ValueError(f'build_trie: item row {i} has a negative token other than the -1 '
                     f'padding: {padded[i].tolist()}.')
  if padded.size and padded.max() > np.iinfo(np.int32).max:
    raise ValueError('build_trie: token ids must fit in int32.')
  is_pad = padded == PAD
  # Padding only at the end: once a row is padded it stays padded.
  pad_inside = is_pad[:, :-1] & ~is_pad[:, 1:]
  if pad_inside.any():
    i = int(np.argwhere(pad_inside)[0, 0])
    raise ValueError(f'build_trie: item row {i} has -1 padding before a token: '
                     f'{padded[i].tolist()}.')
  return padded


def _check_prefix_free(padded: np.ndarray, lengths: np.ndarray,
                       item_ids: np.ndarray) -> None:
  """Raises on duplicate sequences or a sequence that is a prefix of another."""
  # Lexicographic sort with PAD (-1) below every token: a prefix sorts right before the
  # sequences that extend it, so comparing neighbours finds every violation.
  order = np.lexsort(padded.T[::-1])
  rows, row_lengths = padded[order], lengths[order]
  short, long_ = rows[:-1], rows[1:]
  within_short = np.arange(padded.shape[1])[None, :] < row_lengths[:-1, None]
  is_prefix = np.all((short == long_) | ~within_short, axis=1)  # [I - 1]
  if not is_prefix.any():
    return
  k = int(np.flatnonzero(is_prefix)[0])
  a, b = order[k], order[k + 1]
  seq_a = padded[a, :lengths[a]].tolist()
  seq_b = padded[b, :lengths[b]].tolist()
  if lengths[a] == lengths[b]:
    raise ValueError(
        f'build_trie: items {item_ids[a]} and {item_ids[b]} have the same semantic ID '
        f'{seq_a}; SIDs must be unique (add a dedup level to the tokenizer).')
  raise ValueError(
      f'build_trie: the SID of item {item_ids[a]} {seq_a} is a prefix of the SID of item '
      f'{item_ids[b]} {seq_b}; item sequences must be prefix-free (e.g. end short SIDs '
      f'with an EOS token).')


def build_trie(item_tokens: Sequence[np.ndarray] | np.ndarray,
               item_ids: Sequence[int] | np.ndarray | None = None) -> Trie:
  """Builds the dense decoding trie.

  Args:
    item_tokens: one token sequence per item: a list of 1-D int arrays (variable length), or
      an int array [I, T] padded with -1 at the end.
    item_ids: the item id of each sequence (non-negative, unique); default 0..I-1.

  Returns:
    The Trie. Raises ValueError on empty sequences, duplicate sequences, sequences that are
    a prefix of another, bad padding or bad item ids.
  """
  padded = _to_padded(item_tokens)  # [I, T_max]
  num_items = padded.shape[0]
  lengths = np.sum(padded != PAD, axis=1)  # [I]
  if item_ids is None:
    item_ids = np.arange(num_items, dtype=np.int64)
  else:
    item_ids = np.asarray(item_ids).reshape(-1)
    if item_ids.size != num_items or not np.issubdtype(item_ids.dtype, np.integer):
      raise ValueError(f'build_trie: item_ids must be {num_items} integers, got '
                       f'shape {item_ids.shape} dtype {item_ids.dtype}.')
    item_ids = item_ids.astype(np.int64)
    if item_ids.min() < 0 or item_ids.max() > np.iinfo(np.int32).max - 2:
      raise ValueError('build_trie: item_ids must be in [0, 2**31 - 3].')
    unique, counts = np.unique(item_ids, return_counts=True)
    if (counts > 1).any():
      raise ValueError(f'build_trie: item id {int(unique[counts > 1][0])} appears more '
                       f'than once in item_ids.')
  if (lengths == 0).any():
    i = int(np.flatnonzero(lengths == 0)[0])
    raise ValueError(f'build_trie: item {int(item_ids[i])} has an empty token sequence.')
  _check_prefix_free(padded, lengths, item_ids)

  max_len = int(lengths.max())
  per_step_tokens = [np.unique(padded[lengths > t, t]) for t in range(max_len)]
  num_slots = max(tokens.size for tokens in per_step_tokens)
  # Unused slots repeat the step's last token: a valid id that children never allow.
  step_tokens = np.stack([np.pad(tokens, (0, num_slots - tokens.size), mode='edge')
                          for tokens in per_step_tokens]).astype(np.int32)  # [T_max, S]

  # Level by level: every sequence still running sits at internal node `node_of` at step t.
  node_of = np.zeros(num_items, np.int64)  # [I]
  num_nodes = 1  # the root
  edges = []  # (parent node [E], slot [E], child value [E]) per step
  for t in range(max_len):
    running = np.flatnonzero(lengths > t)
    parents = node_of[running]
    slots = np.searchsorted(per_step_tokens[t], padded[running, t])
    ends = lengths[running] == t + 1
    # Items that end here: the slot completes them.
    edges.append((parents[ends], slots[ends], encode_item(item_ids[running[ends]])))
    # The rest move to a new internal node per distinct (parent, slot), numbered in
    # (parent, slot) order so node ids grow breadth-first.
    go_on = running[~ends]
    pairs, inverse = np.unique(np.stack([parents[~ends], slots[~ends]], axis=1), axis=0,
                               return_inverse=True)
    new_nodes = num_nodes + np.arange(pairs.shape[0])
    edges.append((pairs[:, 0], pairs[:, 1], new_nodes))
    node_of[go_on] = new_nodes[inverse.reshape(-1)]
    num_nodes += pairs.shape[0]
  if num_nodes > np.iinfo(np.int32).max:
    raise ValueError('build_trie: too many trie nodes for int32 ids.')

  children = np.full((num_nodes, num_slots), NOT_ALLOWED, np.int32)  # [N, S]
  for parents, slots, values in edges:
    children[parents, slots] = values
  return Trie(step_tokens=step_tokens, children=children, max_len=max_len,
              num_items=num_items)
