"""Markdown tables: one run's results, and the papers' comparison layout across runs.

`collect(root)` finds every run under a directory (each has results.json); runs with the
same config name are seeds of one row and are shown as mean ± sample std (ddof 1), rows in
the papers' order (METHOD_ORDER). `report(root)` is that table with a header naming the
split, datasets and protocols (`--mode=report`). `direction_table` compares a method with a
baseline seed by seed, beside a paper's numbers.
"""

from __future__ import annotations

import glob
import json
import os

from absl import logging
import numpy as np

from genrec_jax.eval import metrics as metrics_lib


def run_table(metrics: dict[str, float], ks) -> str:
  """One run: HR/NDCG overall/head/tail and the popularity metrics, one column per K."""
  header = '| metric | ' + ' | '.join(f'@{k}' for k in ks) + ' |'
  lines = [header, '|---' * (len(ks) + 1) + '|']
  names = [f'{m}{part}' for m in ('hr', 'ndcg') for part in ('', '/head', '/tail')]
  names += ['mgu', 'dgu', 'mgu_groups', 'dgu_groups', 'arp', 'head_slots', 'tail_slots',
            'coverage', 'entropy']
  names += [f'hr/group{g}' for g in range(10)]
  for name in names:
    base, _, part = name.partition('/')
    keys = [f'{base}@{k}' + (f'/{part}' if part else '') for k in ks]
    if not any(key in metrics for key in keys):
      continue
    cells = [fmt(metrics.get(key, float('nan')), base) for key in keys]
    lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


# Table I of the Ghost paper: (column title, metric key pattern, higher is better).
COMPARISON_COLUMNS = (
    ('HR@{k} all', 'hr@{k}', True), ('HR@{k} tail', 'hr@{k}/tail', True),
    ('NDCG@{k} all', 'ndcg@{k}', True), ('NDCG@{k} tail', 'ndcg@{k}/tail', True),
    ('MGU@{k}', 'mgu@{k}', False), ('ARP@{k}', 'arp@{k}', False), ('CNS@{k}', 'cns@{k}', True),
)

# The papers' row order: plain baselines, sequential recommenders, generative ones, the
# debiasing baselines, then Ghost, its ablations and the newer methods; others after them.
METHOD_ORDER = ('pop', 'random', 'sasrec', 'bert4rec', 'gru4rec', 'genair', 'tiger', 'lcrec',
                'letter', 'ifairlrs', 'augment', 'ghost', 'genplugin', 'simgr')


def report(root: str, ks=(10,), split: str = 'test') -> str:
  """The comparison table of every run under `root`, with a header naming the split, the
  datasets and the protocols (--mode=report)."""
  rows = collect(root, split)
  settings = sorted({f"{r.get('dataset', '?')} ({r.get('protocol', '?')})"
                     for _, r in _runs(root)})
  header = (f'{split} split; {"; ".join(settings)}. Mean ± sample std over seeds; ↑ higher is '
            'better, ↓ lower; the best value of each column in bold; CNS across these rows.')
  return header + '\n\n' + comparison_table(rows, ks)


def datasets(root: str) -> str:
  """The datasets of the runs under `root`, e.g. 'ml-100k' (for titles)."""
  return ', '.join(sorted({str(r.get('dataset', '?')) for _, r in _runs(root)}))


def comparison_table(rows: dict[str, list[dict[str, float]]], ks=(5, 10)) -> str:
  """Rows = {name: [metrics of each seed]}; CNS is computed per seed-mean across the rows;
  each column's best row mean is in bold."""
  # A metric a run lacks (other eval.ks) is left out of its row's mean, never a KeyError.
  means = {name: {key: float(np.mean([r[key] for r in runs]))
                  for key in set.intersection(*(set(r) for r in runs))}
           for name, runs in rows.items()}
  cns_keys = ('hr@{k}', 'hr@{k}/tail', 'ndcg@{k}', 'ndcg@{k}/tail', 'mgu@{k}', 'arp@{k}')
  for k in ks:
    if len(means) >= 2 and all(key.format(k=k) in m for m in means.values() for key in cns_keys):
      for name, score in metrics_lib.cns(means, k).items():
        means[name][f'cns@{k}'] = score
  titles = [title.format(k=k) + (' ↑' if up else ' ↓')
            for k in ks for title, _, up in COMPARISON_COLUMNS]
  best = {}
  for k in ks:
    for _, pattern, up in COMPARISON_COLUMNS:
      key = pattern.format(k=k)
      scored = [m[key] for m in means.values() if key in m and not np.isnan(m[key])]
      if len(scored) > 1:
        best[key] = max(scored) if up else min(scored)
  lines = ['| run | seeds | ' + ' | '.join(titles) + ' |', '|---' * (len(titles) + 2) + '|']
  for name, runs in rows.items():
    cells = []
    for k in ks:
      for _, pattern, _ in COMPARISON_COLUMNS:
        key = pattern.format(k=k)
        values = [r[key] for r in runs if key in r]
        if key.startswith('cns'):
          cell = fmt(means[name].get(key, float('nan')))
        else:
          cell = mean_std_cell(values, key)
        cells.append(f'**{cell}**' if key in best and means[name].get(key) == best[key]
                     else cell)
    lines.append(f'| {name} | {len(runs)} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


# What Ghost claims against its baseline: (metric, wanted direction). Overall HR may drop a
# little ('~': the claim is a change within about 10%).
DIRECTIONS = (('hr@10', '~'), ('hr@10/tail', '+'), ('ndcg@10', '~'), ('ndcg@10/tail', '+'),
              ('mgu@10', '-'), ('arp@10', '-'), ('tail_slots@1', '+'), ('tail_slots@10', '+'))


def direction_table(rows: dict[str, list[dict[str, float]]], method: str, baseline: str,
                    paper: dict[str, dict[str, float]] | None = None) -> str:
  """method against baseline per metric: both means, the relative change of the means, in how
  many seeds (paired by seed) the change has the wanted sign (for '~': |change| <= 10%), and
  the paper's relative change when `paper` = {row name: {metric: value}} has both rows."""
  by_seed = {name: {r.get('seed', i): r for i, r in enumerate(rows[name])}
             for name in (method, baseline)}
  seeds = sorted(set(by_seed[method]) & set(by_seed[baseline]))
  lines = [f'| metric | wanted | {baseline} | {method} | change | seeds in wanted direction '
           '| paper change |', '|---' * 7 + '|']
  for key, wanted in DIRECTIONS:
    if not all(key in by_seed[name][s] for name in (method, baseline) for s in seeds):
      continue
    ours = [by_seed[method][s][key] for s in seeds]
    base = [by_seed[baseline][s][key] for s in seeds]
    changes = [_relative(o, b) for o, b in zip(ours, base)]
    holds = sum(abs(c) <= 0.1 if wanted == '~' else c > 0 if wanted == '+' else c < 0
                for c in changes)
    in_paper = (paper and key in paper.get(method, {}) and key in paper.get(baseline, {}))
    paper_cell = (change_cell(paper[method][key], paper[baseline][key]) if in_paper
                  else '–')
    lines.append(f'| {key} | {wanted} | {fmt(np.mean(base), key)} | {fmt(np.mean(ours), key)} | '
                 f'{change_cell(np.mean(ours), np.mean(base))} | {holds}/{len(seeds)} | '
                 f'{paper_cell} |')
  return '\n'.join(lines)


def timing_table(root: str) -> str:
  """Per row: seconds per training epoch (median time per logged step interval, so the
  validation pauses are left out, times steps per epoch) and seconds per validation, mean ±
  sample std over the runs under root that have a metrics.jsonl."""
  per_row: dict[str, list[tuple[float, float]]] = {}
  for run_dir, result in _runs(root):
    log = os.path.join(run_dir, 'metrics.jsonl')
    if not os.path.exists(log):
      continue
    name = result['name']
    with open(log) as f:
      events = [json.loads(line) for line in f]
    train = [e for e in events if e['event'] == 'train']
    valid = [e['eval_seconds'] for e in events if e['event'] == 'valid' and 'eval_seconds' in e]
    if len(train) < 2:
      continue
    rates = [(b['time'] - a['time']) / (b['step'] - a['step']) for a, b in zip(train, train[1:])
             if b['step'] > a['step']]
    steps_per_epoch = train[-1]['step'] / train[-1]['epoch']
    per_row.setdefault(name, []).append(
        (float(np.median(rates)) * steps_per_epoch, float(np.mean(valid)) if valid else np.nan))
  lines = ['| run | runs | s per epoch | s per validation |', '|---|---|---|---|']
  for name, times in per_row.items():
    cells = []
    for column in zip(*times):
      cells.append(f'{np.mean(column):.0f}' + (f' ± {np.std(column, ddof=1):.0f}'
                                               if len(column) > 1 else ''))
    lines.append(f'| {name} | {len(times)} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def _relative(value: float, reference: float) -> float:
  """(value − reference) / reference; from a zero reference any rise is +inf."""
  if reference == 0:
    return float(np.sign(value)) * float('inf') if value else 0.0
  return (value - reference) / reference


def change_cell(value: float, reference: float) -> str:
  """The relative change as a percentage; 'up from 0' where the reference is zero."""
  change = _relative(value, reference)
  return f'{change:+.1%}' if np.isfinite(change) else f"{'up' if change > 0 else 'down'} from 0"


def write_markdown(parts: list[str], out: str) -> str:
  """Writes a report's parts, a blank line apart, to <out>.md and returns the text."""
  text = '\n\n'.join(parts) + '\n'
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(f'{out}.md', 'w') as f:
    f.write(text)
  return text


def collect(root: str, split: str = 'test') -> dict[str, list[dict[str, float]]]:
  """{config name: [split metrics of each run, with its 'seed' and 'num_params']} for every
  results.json under root."""
  if not os.path.isdir(root):
    raise FileNotFoundError(f'{root}: no such directory of runs.')
  rank = lambda method: METHOD_ORDER.index(method) if method in METHOD_ORDER else len(
      METHOD_ORDER)
  found = sorted(_runs(root), key=lambda run: (rank(run[1].get('method')), run[0]))
  # One row per (name, dataset, protocol): runs of two datasets are never pooled.
  settings = {}
  for _, result in found:
    settings.setdefault(result['name'], set()).add((result.get('dataset'),
                                                    result.get('protocol')))
  rows: dict[str, list[dict[str, float]]] = {}
  seen = set()
  for run_dir, result in found:
    name = result['name']
    if len(settings[name]) > 1:
      name = f"{name} [{result.get('dataset')}; {result.get('protocol')}]"
    if split not in result['splits']:
      logging.warning('%s: no %s split in results.json; left out of the table', run_dir, split)
      continue
    if (name, result.get('seed')) in seen:
      logging.warning('%s: seed %s of %s already counted; this repeat is left out', run_dir,
                      result.get('seed'), name)
      continue
    seen.add((name, result.get('seed')))
    metrics = dict(result['splits'][split])
    for key in ('seed', 'num_params'):  # what the run was, beside how it did
      if key in result:
        metrics[key] = result[key]
    rows.setdefault(name, []).append(metrics)
  return rows


def _runs(root: str):
  """(run directory, its results.json) for every finished run under root, in path order."""
  for path in sorted(glob.glob(os.path.join(root, '**', 'results.json'), recursive=True)):
    with open(path) as f:
      yield os.path.dirname(path), json.load(f)


def mean_std_cell(values, metric: str = '') -> str:
  """'mean ± sample std' (the std with the mean's decimals); one value alone; nan for none."""
  if len(values) < 2:
    return fmt(values[0] if len(values) else float('nan'), metric)
  mean, std = np.mean(values), np.std(values, ddof=1)
  decimals = _decimals(mean, metric)
  return f'{mean:.{decimals}f} ± {std:.{decimals}f}'


# Counts print as integers (a mean of counts with one decimal), popularity (ARP) and anything
# of 100 or more with one decimal, rates and scores with four.
_COUNTS = ('head_slots', 'tail_slots', 'empty_slots', 'num_users', 'num_tail_users')


def _decimals(x: float, metric: str) -> int:
  base = metric.split('@')[0]
  if base in _COUNTS:
    return 0 if float(x).is_integer() else 1
  return 1 if base == 'arp' or abs(x) >= 100 else 4


def fmt(x: float, metric: str = '') -> str:
  if x is None or np.isnan(x):
    return '–'
  return f'{x:.{_decimals(x, metric)}f}'
