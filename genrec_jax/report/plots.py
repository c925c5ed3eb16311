"""PNG figures of a comparison: head/tail shares of the recommendation lists, hit rate per
popularity group, and overall-vs-tail NDCG (the Pareto view of Ghost's Fig. 2).

Every figure takes rows = {row name: [metrics of each seed]} and shows the seed spread (error
bars of one sample std, and each seed as a faint point where it is a scatter), gives every row
its own colour, names the dataset and split in its title (`where`, e.g. 'MovieLens-100k,
test split'), and keeps its labels apart: names go in legends or on rotated tick labels, never
as free text beside the markers.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use('Agg')  # files only, no display
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np


def palette(n: int) -> list:
  """n distinct colours: tab10 up to 10 rows, tab20 up to 20, then evenly spaced hues."""
  if n <= 10:
    return [plt.get_cmap('tab10')(i) for i in range(n)]
  if n <= 20:
    return [plt.get_cmap('tab20')(i) for i in range(n)]
  return [plt.get_cmap('hsv')(i / n) for i in range(n)]


def _stats(runs: list[dict], key: str) -> tuple[float, float]:
  """(mean, sample std; 0 for one seed) of `key` over the runs that have it."""
  values = [r[key] for r in runs if key in r]
  if not values:
    return np.nan, np.nan
  return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def composition(rows: dict[str, list[dict]], k: int, path: str, where: str = '') -> str:
  """Stacked bars: the shares of head and tail items among the filled top-k slots (mean over
  seeds; error bar: the tail share's sample std)."""
  names = list(rows)
  shares = []
  for runs in rows.values():
    per_seed = [r[f'tail_slots@{k}'] / max(r[f'tail_slots@{k}'] + r[f'head_slots@{k}'], 1)
                for r in runs if f'tail_slots@{k}' in r and f'head_slots@{k}' in r]
    shares.append((np.mean(per_seed) if per_seed else np.nan,
                   np.std(per_seed, ddof=1) if len(per_seed) > 1 else 0.0))
  tail, spread = np.array(shares).T
  fig, ax = plt.subplots(figsize=(7, 0.3 * len(names) + 1.5))
  y = np.arange(len(names))[::-1]  # the first row on top
  ax.barh(y, 1 - tail, label='head items', color='#4c72b0')
  ax.barh(y, tail, left=1 - tail, label='tail items', color='#dd8452')
  # The spread belongs at the head/tail boundary (a bar's own error bar sits at its end: 100%).
  ax.errorbar(1 - tail, y, xerr=spread, fmt='none', ecolor='black', capsize=2, elinewidth=1)
  ax.set_yticks(y, names)
  ax.set_xlim(0, 1)
  ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
  ax.set_xlabel(f'share of all top-{k} slots')
  ax.set_title(_title(f'Head/tail share of the top-{k} recommendations', where))
  ax.legend(loc='upper left', bbox_to_anchor=(1.01, 1), fontsize=8)
  return _save(fig, path)


def group_hit_rates(rows: dict[str, list[dict]], k: int, num_groups: int, path: str,
                    where: str = '') -> str:
  """Grouped bars: HR@k of test users by the popularity group of their target (error bars:
  sample std over seeds)."""
  names = list(rows)
  width = 0.8 / len(names)
  fig, ax = plt.subplots(figsize=(3 + 1.6 * num_groups, 4))
  for i, (name, colour) in enumerate(zip(names, palette(len(names)))):
    stats = np.array([_stats(rows[name], f'hr@{k}/group{g}') for g in range(num_groups)])
    ax.bar(np.arange(num_groups) + i * width, stats[:, 0], width, yerr=stats[:, 1],
           label=name, color=colour, capsize=2, error_kw={'elinewidth': 0.8})
  ax.set_xticks(np.arange(num_groups) + 0.4 - width / 2,
                [f'group {g}' + (' (most popular)' if g == 0 else '') for g in range(num_groups)])
  ax.set_ylabel(f'HR@{k}')
  ax.set_title(_title(f'Hit rate by popularity group of the target (HR@{k})', where))
  ax.legend(loc='upper left', bbox_to_anchor=(1.01, 1), fontsize=8)
  return _save(fig, path)


def pareto(rows: dict[str, list[dict]], k: int, path: str, where: str = '') -> str:
  """Scatter: NDCG@k overall against tail, each seed a faint point, each row's mean a marker
  with one-std error bars; MGU@k in the legend."""
  names = list(rows)
  fig, ax = plt.subplots(figsize=(8, 4.5))
  for name, colour in zip(names, palette(len(names))):
    runs = rows[name]
    seeds = [(r[f'ndcg@{k}'], r[f'ndcg@{k}/tail']) for r in runs
             if f'ndcg@{k}' in r and f'ndcg@{k}/tail' in r]
    if not seeds:
      continue
    ax.scatter(*zip(*seeds), s=12, color=colour, alpha=0.3, linewidths=0)
    (x, dx), (y, dy) = _stats(runs, f'ndcg@{k}'), _stats(runs, f'ndcg@{k}/tail')
    mgu = _stats(runs, f'mgu@{k}')[0]
    ax.errorbar(x, y, xerr=dx, yerr=dy, fmt='o', color=colour, markersize=6, capsize=2,
                label=f'{name} (MGU {mgu:.3f}, {len(runs)} seed{"s" * (len(runs) > 1)})')
  ax.set_xlabel(f'NDCG@{k} overall')
  ax.set_ylabel(f'NDCG@{k} tail')
  ax.set_title(_title('Overall vs tail accuracy', where))
  ax.legend(loc='upper left', bbox_to_anchor=(1.01, 1), fontsize=7)
  return _save(fig, path)


def heatmaps(cells: dict, row_values, column_values, row_label: str, column_label: str,
             metrics, path: str, where: str = '') -> str:
  """One heatmap per (metric key, title) in `metrics` over a 2-d grid; cells = {(row value,
  column value): [metrics of each seed] or None}; each cell shows its mean (and sample std
  over seeds); missing cells stay blank."""
  fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.8))
  for ax, (key, title) in zip(np.atleast_1d(axes), metrics):
    means = np.array([[_stats(cells.get((r, c)) or [], key)[0] for c in column_values]
                      for r in row_values])
    image = ax.imshow(np.ma.masked_invalid(means), cmap='viridis', origin='lower')
    for i, r in enumerate(row_values):
      for j, c in enumerate(column_values):
        runs = cells.get((r, c)) or []
        mean, std = _stats(runs, key)
        if runs and not np.isnan(mean):
          spread = f'\n± {std:.3f}' if len(runs) > 1 else ''
          ax.text(j, i, f'{mean:.3f}{spread}', ha='center', va='center', fontsize=8,
                  color='white' if mean < np.nanmean(means) else 'black')
    ax.set_xticks(range(len(column_values)), [str(c) for c in column_values])
    ax.set_yticks(range(len(row_values)), [str(r) for r in row_values])
    ax.set_xlabel(column_label)
    ax.set_ylabel(row_label)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, shrink=0.8)
  fig.suptitle(where)
  return _save(fig, path)


def lines(runs_by_value: dict, label: str, metrics, path: str, where: str = '',
          reference: list[dict] | None = None, reference_label: str = '') -> str:
  """One panel per (metric key, title): the metric's mean over seeds against the swept value
  (error bars: sample std), points without runs left out. `reference` (runs of one setting
  over several seeds) is drawn as a grey band of mean ± sample std: the seed noise a
  one-seed point is read against."""
  values = [v for v, runs in runs_by_value.items() if runs]
  fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.4))
  for ax, (key, title), colour in zip(np.atleast_1d(axes), metrics, palette(len(metrics))):
    stats = np.array([_stats(runs_by_value[v], key) for v in values])
    if reference:
      mean, std = _stats(reference, key)
      ax.axhspan(mean - std, mean + std, color='grey', alpha=0.2, label=reference_label)
      ax.axhline(mean, color='grey', linestyle='--', linewidth=1)
    ax.errorbar(range(len(values)), stats[:, 0], yerr=stats[:, 1], marker='o', color=colour,
                capsize=3)
    ax.set_xticks(range(len(values)), [str(v) for v in values])
    ax.set_xlabel(label)
    ax.set_title(title)
  if reference:
    np.atleast_1d(axes)[-1].legend(loc='upper left', bbox_to_anchor=(1.01, 1), fontsize=8)
  fig.suptitle(where)
  return _save(fig, path)


def scaling(rows: dict[str, list[dict]], x_key: str, metrics, path: str,
            where: str = '', x_label: str = 'parameters') -> str:
  """One panel per (metric key, title): the metric against `x_key` (e.g. the parameter
  count or the beam width, log scale), one line per method; rows are named
  '<method> (<size>)'."""
  by_method: dict[str, list] = {}
  for name, runs in rows.items():
    by_method.setdefault(name.rsplit(' (', 1)[0], []).append(runs)
  fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics) + 1.5, 3.6))
  for ax, (key, title) in zip(np.atleast_1d(axes), metrics):
    for (method, sizes), colour in zip(by_method.items(), palette(len(by_method))):
      points = sorted((_stats(runs, x_key)[0], *_stats(runs, key)) for runs in sizes)
      x, y, dy = np.array(points).T
      ax.errorbar(x, y, yerr=dy, marker='o', color=colour, capsize=3, label=method)
    ax.set_xscale('log')
    ax.set_xlabel(x_label)
    ax.set_title(title)
  np.atleast_1d(axes)[-1].legend(loc='upper left', bbox_to_anchor=(1.01, 1), fontsize=8)
  fig.suptitle(where)
  return _save(fig, path)


def _title(text: str, where: str) -> str:
  return f'{text}\n{where}' if where else text


def _save(fig, path: str) -> str:
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  fig.tight_layout()
  fig.savefig(path, dpi=120, bbox_inches='tight')  # legends outside the axes stay in
  plt.close(fig)
  return path
