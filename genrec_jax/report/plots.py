"""PNG figures of a comparison: head/tail composition of the recommendation lists, hit rate
per popularity group, and overall-vs-tail NDCG (the Pareto view of Ghost's Fig. 2)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use('Agg')  # files only, no display
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np


def _means(rows: dict[str, list[dict]], key: str) -> np.ndarray:
  return np.array([np.mean([r.get(key, np.nan) for r in runs]) for runs in rows.values()])


def composition(rows: dict[str, list[dict]], k: int, path: str) -> str:
  """Stacked bars: head and tail items among all top-k slots (mean over seeds)."""
  names = list(rows)
  head, tail = _means(rows, f'head_slots@{k}'), _means(rows, f'tail_slots@{k}')
  fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 4))
  ax.bar(names, head, label='head items', color='#4c72b0')
  ax.bar(names, tail, bottom=head, label='tail items', color='#dd8452')
  for i, (h, t) in enumerate(zip(head, tail)):
    ax.text(i, h + t, f'{t / max(h + t, 1):.0%} tail', ha='center', va='bottom', fontsize=8)
  ax.set_ylabel(f'slots in all top-{k} lists')
  ax.set_title(f'Head/tail composition of the top-{k} recommendations')
  ax.legend()
  plt.setp(ax.get_xticklabels(), rotation=30, ha='right')
  return _save(fig, path)


def group_hit_rates(rows: dict[str, list[dict]], k: int, num_groups: int, path: str) -> str:
  """Grouped bars: HR@k of test users by the popularity group of their target."""
  names = list(rows)
  width = 0.8 / len(names)
  fig, ax = plt.subplots(figsize=(2 + 1.5 * num_groups, 4))
  for i, name in enumerate(names):
    values = [np.mean([r.get(f'hr@{k}/group{g}', np.nan) for r in rows[name]])
              for g in range(num_groups)]
    ax.bar(np.arange(num_groups) + i * width, values, width, label=name)
  ax.set_xticks(np.arange(num_groups) + 0.4 - width / 2)
  ax.set_xticklabels([f'group {g}' + (' (most popular)' if g == 0 else '')
                      for g in range(num_groups)])
  ax.set_ylabel(f'HR@{k}')
  ax.set_title(f'Hit rate by popularity group of the target (HR@{k})')
  ax.legend(fontsize=8)
  return _save(fig, path)


def pareto(rows: dict[str, list[dict]], k: int, path: str) -> str:
  """Scatter: NDCG@k overall vs tail, MGU@k as the marker size label."""
  fig, ax = plt.subplots(figsize=(5, 4))
  overall, tail = _means(rows, f'ndcg@{k}'), _means(rows, f'ndcg@{k}/tail')
  mgu = _means(rows, f'mgu@{k}')
  ax.scatter(overall, tail, s=40)
  labels = [f'{name} (MGU {m:.3f})' for name, m in zip(rows, mgu)]
  ax.autoscale_view()  # the data limits the labels are placed in
  points = ax.transData.transform(np.stack([overall, tail], 1)) * 72 / fig.dpi
  label_size = 7
  offsets = _label_offsets(points, labels, label_size)
  for label, xy, dy in zip(labels, zip(overall, tail), offsets):
    ax.annotate(label, xy, fontsize=label_size, xytext=(3, dy), textcoords='offset points')
  ax.set_xlabel(f'NDCG@{k} overall')
  ax.set_ylabel(f'NDCG@{k} tail')
  ax.set_title('Overall vs tail accuracy')
  return _save(fig, path)


def _label_offsets(points, labels, fontsize: float) -> list[float]:
  """Vertical label offsets (in points) so that labels of nearby markers do not overlap.

  Labels are placed from the top marker down; one that would overlap a placed label moves
  down a line at a time. Widths are estimated from the character count.
  """
  placed, offsets = [], [0.0] * len(labels)
  for i in sorted(range(len(labels)), key=lambda i: -points[i][1]):
    x, y = points[i]
    right, dy = x + 0.55 * fontsize * len(labels[i]), 3.0
    while any(x < x1 and x0 < right and abs(y + dy - y1) < fontsize + 1
              for x0, x1, y1 in placed):
      dy -= fontsize + 1
    placed.append((x, right, y + dy))
    offsets[i] = dy
  return offsets


def _save(fig, path: str) -> str:
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path
