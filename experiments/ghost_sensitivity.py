r"""Ghost's sensitivity studies on MovieLens-100k, trained per example (Ghost's Figs. 4, 6, 7):
the SID lengths L^h x L^t, AUO's weight alpha and its number of distractors K_b.

Every grid point is Ghost (per prefix) on `configs/ghost_ins.py:cpu` with one setting changed
from the defaults (L^h 3, L^t 2, alpha 0.1, K_b 5); the default point is one run shared by
the three studies. Run, then write the figures and the table:
  python -m launch.sweep --sweep=experiments/ghost_sensitivity.py --root=runs/sensitivity \
      --keep=experiments/runs/ghost_sensitivity --seeds=0 --report=experiments/ghost_sensitivity
(the report alone: python experiments/ghost_sensitivity.py
--root=experiments/runs/ghost_sensitivity --out=experiments/ghost_sensitivity; the table in
experiments/ghost_sensitivity.md; figures experiments/ghost_length_heatmap.png,
ghost_alpha.png, ghost_k_b.png).
Cost: 17 runs of 24-36 min each (~580 s per epoch) on one core of this machine, the other busy (one
seed); `--only=` picks grid points, e.g. the length grid alone. The figures show every seed
kept so far (mean and sample std where there are several), against the seed noise of the
default setting: Ghost (per prefix) of the Ghost table over its kept seeds (`--reference`),
a grey band on the line plots and a line of the table.
"""

from __future__ import annotations

import argparse
import os
import sys

DEFAULTS = {'head_levels': 3, 'tail_levels': 2, 'alpha': 0.1, 'k_b': 5}
HEAD_LEVELS, TAIL_LEVELS = (3, 4, 5), (1, 2, 3)
ALPHAS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.5)
K_BS = (1, 3, 5, 10)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The default point is the Ghost table's 'Ghost (per prefix)' row, kept there on 3 seeds.
REFERENCE_ROOT, REFERENCE_ROW = os.path.join(REPO, 'experiments/runs/ghost_ml100k'), (
    'Ghost (per prefix)')


def row_name(head_levels, tail_levels, alpha, k_b) -> str:
  return f'Ghost Lh={head_levels} Lt={tail_levels} alpha={alpha} Kb={k_b}'


def grid() -> list[dict]:
  """Every setting of the three studies once (the default point is shared)."""
  points = [dict(DEFAULTS, head_levels=h, tail_levels=t) for h in HEAD_LEVELS
            for t in TAIL_LEVELS]
  points += [dict(DEFAULTS, alpha=a) for a in ALPHAS]
  points += [dict(DEFAULTS, k_b=k) for k in K_BS]
  unique = {row_name(**p): p for p in points}
  return [dict(setting, name=name) for name, setting in unique.items()]


def get_sweep(variant: str, root: str) -> list[dict]:
  del root
  variant = variant or 'cpu'
  return [{'name': p['name'], 'config': f'configs/ghost_ins.py:{variant}',
           'overrides': {'train.example_kind': 'prefix',
                         'tokenize.head_levels': p['head_levels'],
                         'tokenize.tail_levels': p['tail_levels'],
                         'ghost.alpha': p['alpha'], 'ghost.k_b': p['k_b']}}
          for p in grid()]


def report(root: str, out: str, where: str = 'MovieLens-100k, test split',
           reference_root: str = REFERENCE_ROOT) -> str:
  sys.path.insert(0, REPO)
  from genrec_jax.report import plots  # pylint: disable=g-import-not-at-top
  from genrec_jax.report import tables  # pylint: disable=g-import-not-at-top
  rows = tables.collect(root)
  metrics = (('hr@10/tail', 'tail HR@10'), ('hr@10', 'HR@10'), ('mgu@10', 'MGU@10'))
  parts = ['## Every grid point (test split)',
           tables.comparison_table({p['name']: rows[p['name']] for p in grid()
                                    if p['name'] in rows}, ks=(10,))]
  reference = (tables.collect(reference_root).get(REFERENCE_ROW)
               if reference_root and os.path.isdir(reference_root) else None)
  reference_label = ''
  if reference:
    reference_label = f'default, {len(reference)} seeds\n(mean ± std)'
    noise = ', '.join(f'{title} {tables.mean_std_cell([r[key] for r in reference], key)}'
                      for key, title in metrics)
    parts.append(f'Seed noise at the default setting ({REFERENCE_ROW} in '
                 f'{os.path.relpath(reference_root, REPO)}, {len(reference)} seeds, mean ± '
                 f'sample std): {noise}.')
  figures, folder = [], os.path.dirname(out)
  lengths = {(h, t): rows.get(row_name(**dict(DEFAULTS, head_levels=h, tail_levels=t)))
             for h in HEAD_LEVELS for t in TAIL_LEVELS}
  if any(lengths.values()):
    figures.append(plots.heatmaps(
        lengths, HEAD_LEVELS, TAIL_LEVELS, 'L^h (head levels)', 'L^t (tail levels)', metrics,
        os.path.join(folder, 'ghost_length_heatmap.png'), where=where))
  for field, values, label in (('alpha', ALPHAS, 'AUO weight alpha'),
                               ('k_b', K_BS, 'distractors K_b')):
    runs = {v: rows.get(row_name(**dict(DEFAULTS, **{field: v}))) for v in values}
    if any(runs.values()):
      figures.append(plots.lines(runs, label, metrics,
                                 os.path.join(folder, f'ghost_{field}.png'), where=where,
                                 reference=reference, reference_label=reference_label))
  parts.append('Figures: ' + ', '.join(os.path.basename(f) for f in figures))
  return tables.write_markdown(parts, out)


if __name__ == '__main__':
  # argparse, not absl flags: launch.sweep imports this file for get_sweep.
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--root', required=True, help='runs or kept records of the sweep')
  parser.add_argument('--out', default='experiments/ghost_sensitivity',
                      help='report file prefix')
  parser.add_argument('--reference', default=REFERENCE_ROOT,
                      help=f"kept runs holding '{REFERENCE_ROW}' on several seeds, the seed "
                      "noise of the default setting ('' for none)")
  args = parser.parse_args()
  print(report(args.root, args.out, reference_root=args.reference))
