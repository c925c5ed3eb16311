r"""IFairLRS-RR's trade-off curve from one trained generative run, without retraining: the
run's beam (decode.beam_size candidates per user, decoded once) re-ranked by
score − λ·log(1 + training count) for every λ of a grid, on the valid and test splits.

  python experiments/rr_tradeoff.py --run=experiments/runs/... (a workdir with checkpoints)
      [--lambdas=0,0.1,0.25,0.5,1,2] [--out=RUN/ablations/rr_tradeoff]

Writes <out>.md (every λ's HR@10, tail HR@10, NDCG@10, MGU@10, ARP@10 per split) and
<out>.png (test HR@10 and tail HR@10 against λ). The run's own results are never touched.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from genrec_jax import methods  # pylint: disable=g-import-not-at-top,wrong-import-position
from genrec_jax import run  # pylint: disable=g-import-not-at-top,wrong-import-position
from genrec_jax.methods import ifairlrs  # pylint: disable=g-import-not-at-top,wrong-import-position
from genrec_jax.report import plots  # pylint: disable=g-import-not-at-top,wrong-import-position
from genrec_jax.report import tables  # pylint: disable=g-import-not-at-top,wrong-import-position
from launch import sweep  # pylint: disable=g-import-not-at-top,wrong-import-position

COLUMNS = ('hr@10', 'hr@10/tail', 'ndcg@10', 'mgu@10', 'arp@10')


def tradeoff(workdir: str, lambdas, splits=('valid', 'test')) -> dict[str, dict[float, dict]]:
  """{split: {λ: metrics}} of the run in `workdir` re-ranked by IFairLRS-RR's penalty."""
  config, dataset, method, params = run.load_run(workdir)
  if methods.spec(config.method).family != 'generative':
    raise ValueError(f'{workdir}: method {config.method} has no beam to re-rank; use a '
                     'generative run (LC-Rec, Ghost, TIGER, ...).')
  scorer = ifairlrs.RerankedBeam(dataset.item_counts, 0.0, config.decode.beam_size)
  return {split: scorer.metrics_by_lambda(method, params, dataset, split, config.eval, lambdas)
          for split in splits}


def report(curves: dict[str, dict[float, dict]], workdir: str, out: str) -> str:
  parts = [f'# IFairLRS-RR re-ranking of {sweep.run_label(workdir)} ({workdir})']
  for split, by_lambda in curves.items():
    lines = ['| λ | ' + ' | '.join(COLUMNS) + ' |', '|---' * (len(COLUMNS) + 1) + '|']
    for lam, metrics in by_lambda.items():
      lines.append(f'| {lam:g} | ' + ' | '.join(tables.fmt(metrics[c], c) for c in COLUMNS)
                   + ' |')
    parts += [f'## {split}', '\n'.join(lines)]
  figure = plots.lines({lam: [m] for lam, m in curves['test'].items()}, 'penalty λ',
                       (('hr@10', 'HR@10'), ('hr@10/tail', 'tail HR@10'), ('mgu@10', 'MGU@10')),
                       f'{out}.png', where=f'test split, {sweep.run_label(workdir)}')
  parts.append(f'Figure: {os.path.basename(figure)}')
  return tables.write_markdown(parts, out)


if __name__ == '__main__':
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--run', required=True, help='workdir of a trained generative run')
  parser.add_argument('--lambdas', default='0,0.1,0.25,0.5,1,2')
  parser.add_argument('--out', default='', help='file prefix (default RUN/ablations/rr_tradeoff)')
  args = parser.parse_args()
  out = args.out or os.path.join(args.run, 'ablations', 'rr_tradeoff')
  os.makedirs(os.path.dirname(out), exist_ok=True)
  lambdas = [float(x) for x in args.lambdas.split(',')]
  print(report(tradeoff(args.run, lambdas), args.run, out))
