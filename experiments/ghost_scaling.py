r"""Does a bigger backbone close the head/tail gap? LC-Rec and Ghost at several decoder sizes,
trained per example (the Ghost paper's scaling study, which uses Qwen3 0.6B-8B).

  cpu    three from-scratch Qwen2-shaped decoders on MovieLens-100k:
         small (d 64, 1 layer), base (d 128, 2 layers: the table's `cpu` rows), large
         (d 256, 4 layers);
  paper  the Qwen3 ladder on Amazon Instruments, each read from a local Hugging Face copy in
         checkpoints/Qwen3-<size> (not downloaded here): 0.6B, 1.7B, 4B, 8B.

  python -m launch.sweep --sweep=experiments/ghost_scaling.py --root=runs/scaling \
      --keep=experiments/runs/ghost_scaling --seeds=0 --report=experiments/ghost_scaling
(the report alone: python experiments/ghost_scaling.py --root=experiments/runs/ghost_scaling
--out=experiments/ghost_scaling; the tables in experiments/ghost_scaling.md, the figure
experiments/ghost_scaling.png: head and tail HR@10 against the parameter count each run
recorded). Cost on this machine, one seed,
each run on one core beside another: small 8 min, base 20 (LC-Rec) and 32 (Ghost) min, large
85 min (LC-Rec) and ~2.7 h (Ghost, ~1.1 s per step). Result, seed 0: head/tail HR@10 of
LC-Rec 0.137/0.029, 0.179/0.039, 0.194/0.048 and of Ghost 0.081/0.004, 0.139/0.037,
0.142/0.037 (small, base, large): size does not close the gap.
"""

from __future__ import annotations

import argparse
import os
import sys

CPU_SIZES = {
    'small': dict(hidden_size=64, intermediate_size=256, num_layers=1, num_heads=2,
                  num_kv_heads=1),
    'base': dict(hidden_size=128, intermediate_size=512, num_layers=2, num_heads=4,
                 num_kv_heads=2),
    'large': dict(hidden_size=256, intermediate_size=1024, num_layers=4, num_heads=8,
                  num_kv_heads=4),
}
QWEN3_LADDER = ('0.6B', '1.7B', '4B', '8B')
METHODS = (('LC-Rec', 'configs/lcrec_ins.py:{variant}_prefix', {}),
           ('Ghost', 'configs/ghost_ins.py:{variant}', {'train.example_kind': 'prefix'}))


def get_sweep(variant: str, root: str) -> list[dict]:
  del root
  variant = variant or 'cpu'
  if variant == 'paper':
    sizes = {size: {'checkpoint': f'checkpoints/Qwen3-{size}'} for size in QWEN3_LADDER}
  else:
    sizes = CPU_SIZES
  return [{'name': f'{name} ({size})', 'config': config.format(variant=variant),
           'overrides': {**overrides, **{f'model.{k}': v for k, v in fields.items()}}}
          for size, fields in sizes.items() for name, config, overrides in METHODS]


def gap_table(rows: dict[str, list[dict]]) -> str:
  """Per run: parameters, head and tail HR@10, their difference and their ratio."""
  lines = ['| run | parameters | head HR@10 | tail HR@10 | head − tail | head / tail |',
           '|---|---|---|---|---|---|']
  for name, runs in rows.items():
    head, tail = (sum(r[key] for r in runs) / len(runs) for key in ('hr@10/head', 'hr@10/tail'))
    ratio = f'{head / tail:.1f}x' if tail else 'no tail hit'
    lines.append(f'| {name} | {runs[0]["num_params"]:,.0f} | {head:.4f} | {tail:.4f} | '
                 f'{head - tail:.4f} | {ratio} |')
  return '\n'.join(lines)


def report(root: str, out: str, where: str = 'MovieLens-100k, test split') -> str:
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from genrec_jax.report import plots  # pylint: disable=g-import-not-at-top
  from genrec_jax.report import tables  # pylint: disable=g-import-not-at-top
  collected = tables.collect(root)
  order = [r['name'] for variant in ('cpu', 'paper') for r in get_sweep(variant, root)]
  rows = {name: collected[name] for name in order if name in collected}  # by method and size
  rows.update((name, runs) for name, runs in collected.items() if name not in rows)
  sized = {name: runs for name, runs in rows.items() if all('num_params' in r for r in runs)}
  parts = ['## Head and tail accuracy by backbone size (test split)',
           tables.comparison_table(rows, ks=(10,)), '## The head/tail gap (means over seeds)',
           gap_table(sized)]
  if sized:
    figure = plots.scaling(sized, 'num_params', (('hr@10/head', 'head HR@10'),
                                                 ('hr@10/tail', 'tail HR@10')),
                           os.path.join(os.path.dirname(out), 'ghost_scaling.png'), where=where)
    parts.append(f'Figure: {os.path.basename(figure)}')
  return tables.write_markdown(parts, out)


if __name__ == '__main__':
  # argparse, not absl flags: launch.sweep imports this file for get_sweep.
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--root', required=True, help='runs or kept records of the sweep')
  parser.add_argument('--out', default='experiments/ghost_scaling', help='report prefix')
  args = parser.parse_args()
  print(report(args.root, args.out))
