"""Statistics of a SID table: code usage per level and how tail SIDs branch off head SIDs.

Head/tail branching, for a tail item v walking its SID from the root:
  - `head_divergence_steps`: the number of steps at which at least one head item that shared
    v's prefix so far takes a different token (a head candidate competing with v's token);
  - `skeleton_exit_step`: the step at which v's path enters a subtree holding no head item
    (it leaves the head skeleton). Under SKT every tail item exits at step L^h (its first
    tail token, where the anchor head emits EOS): one predictable branching point, so the
    exit step has zero spread. Under plain RQ it varies from item to item.
Steps are 0-based token positions.
"""

from __future__ import annotations

import numpy as np

from genrec_jax.tokenize import rq_kmeans
from genrec_jax.tokenize.sid_table import SIDTable


def code_usage(table: SIDTable) -> list[dict[str, float]]:
  """Per level: items using it, share of its codes used, perplexity of code frequencies."""
  out = []
  for level, size in enumerate(table.level_sizes):
    codes = table.codes[:, level]
    codes = codes[codes >= 0]  # items that skip the level (SKT heads, dedup) do not count
    used, perplexity = (rq_kmeans.codebook_usage(codes[:, None], [size]) if len(codes)
                        else ([0.0], [0.0]))
    out.append({'level': table.level_names[level], 'size': size, 'items': int(len(codes)),
                'codes_used': float(used[0]), 'perplexity': float(perplexity[0])})
  return out


def branching(table: SIDTable, is_head: np.ndarray) -> dict[str, float]:
  """Head/tail branching statistics over tail items (see the module docstring)."""
  tokens = table.item_tokens()
  heads, tails = np.flatnonzero(is_head), np.flatnonzero(~is_head)
  if len(tails) == 0 or len(heads) == 0:
    return {}
  divergences = np.zeros(len(tails), np.int64)
  exit_step = np.full(len(tails), -1, np.int64)
  for start in range(0, len(tails), 2048):  # chunks bound the [tails, heads] masks
    rows = slice(start, start + 2048)
    divergences[rows], exit_step[rows] = _walk(tokens[tails[rows]], tokens[heads])
  exited = exit_step >= 0
  return {
      'tail_items': float(len(tails)),
      'head_divergence_steps_mean': float(divergences.mean()),
      'skeleton_exit_step_mean': float(exit_step[exited].mean()) if exited.any() else -1.0,
      'skeleton_exit_step_std': float(exit_step[exited].std()) if exited.any() else -1.0,
      'skeleton_exit_distinct_steps': float(len(np.unique(exit_step[exited]))),
  }


def _walk(tail_tokens: np.ndarray, head_tokens: np.ndarray):
  """(head divergences, skeleton exit step) of each tail row; see the module docstring."""
  divergences = np.zeros(len(tail_tokens), np.int64)
  exit_step = np.full(len(tail_tokens), -1, np.int64)
  shared = np.ones((len(tail_tokens), len(head_tokens)), bool)  # head shares prefix so far
  for step in range(tail_tokens.shape[1]):
    tail_token = tail_tokens[:, step]
    active = tail_token >= 0
    same_next = head_tokens[None, :, step] == tail_token[:, None]
    divergences += active & (shared & ~same_next).any(1)
    shared &= same_next
    exit_step[active & (exit_step < 0) & ~shared.any(1)] = step
  return divergences, exit_step


def describe(table: SIDTable, is_head: np.ndarray) -> str:
  """The SID statistics in words, as `--mode=tokenize` prints them."""
  method = table.info.get('method', '')
  lines = [f'SIDs{f" ({method})" if method else ""}: {table.num_items:,} items, vocabulary '
           f'{table.vocab_size}, {_range(table.lengths.min(), table.max_len)} tokens per item; '
           f'collision rate before the dedup level {100 * table.info.get("collision_rate", 0.0):.2f}%.']
  for level, u in enumerate(code_usage(table)):
    tail_only = u['items'] and not (table.codes[is_head, level] >= 0).any()
    lines.append(f'  level {u["level"]} ({u["size"]} codes{", tail items only" * tail_only}): '
                 f'{u["items"]:,} items, {100 * u["codes_used"]:.1f}% of the codes used, '
                 f'perplexity {u["perplexity"]:.1f}')
  b = branching(table, is_head)
  if b:
    exit_steps = (f'at step {b["skeleton_exit_step_mean"]:.0f}'
                  if b['skeleton_exit_distinct_steps'] == 1 else
                  f'at {b["skeleton_exit_distinct_steps"]:.0f} different steps (mean '
                  f'{b["skeleton_exit_step_mean"]:.2f} ± {b["skeleton_exit_step_std"]:.2f})')
    lines.append(
        f'  the {b["tail_items"]:,.0f} tail SIDs: on average {b["head_divergence_steps_mean"]:.2f} '
        'of their steps have a head item that shared the prefix choose another token; they '
        f'leave the head skeleton (the prefixes of head SIDs) {exit_steps}, counting from 0.')
  return '\n'.join(lines)


def _range(low: int, high: int) -> str:
  return f'{low}' if low == high else f'{low}-{high}'
