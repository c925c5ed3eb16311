r"""Does a wider beam find the tail items? Trained generative runs decoded again at several beam
widths, without retraining (a checkpoint-restore ablation; SimGR's argument is that the beam
prunes items, the tail first).

  python experiments/beam_width.py --runs=runs/ghost_table/LC-Rec_per_prefix/seed1,... \
      --beams=10,20,50,100 --keep=experiments/runs/beam_width_ml100k
  python experiments/beam_width.py --keep=experiments/runs/beam_width_ml100k \
      --out=experiments/beam_width_ml100k          (the report alone, from the kept records)

Each run's best checkpoint is evaluated on its valid and test splits at each width, as
`python -m genrec_jax.main --mode=eval --workdir=RUN --config.decode.beam_size=B
--out=RUN/ablations/beam<B>` would (widths already evaluated are read back, so the script
resumes); the run's own results are never touched. Each result is copied to
<keep>/<row>/<seed>/beam<B>/results.json, and <out>.md (test metrics per row and width, mean ±
std over the runs of a row) and <out>.png (HR@10, tail HR@10, MGU@10 against the width) are
written from those copies. A width below one of the run's eval Ks drops that K (a beam ranks
only B items); widths below 10 are refused.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from genrec_jax import run  # pylint: disable=g-import-not-at-top,wrong-import-position
from genrec_jax.report import plots  # pylint: disable=g-import-not-at-top,wrong-import-position
from genrec_jax.report import tables  # pylint: disable=g-import-not-at-top,wrong-import-position

FIGURE_METRICS = (('hr@10', 'HR@10'), ('hr@10/tail', 'tail HR@10'), ('mgu@10', 'MGU@10'))


def evaluate_at(workdir: str, beam: int) -> str:
  """RUN/ablations/beam<B>/results.json of `workdir`'s best checkpoint decoded with beam B
  (evaluated unless already there)."""
  out = os.path.join(workdir, 'ablations', f'beam{beam}')
  path = os.path.join(out, 'results.json')
  if not os.path.exists(path):
    config = run.saved_config(os.path.join(workdir, 'config.json'))
    config.decode.beam_size = beam
    config.eval.ks = tuple(k for k in config.eval.ks if k <= beam)  # a beam ranks B items
    run.train_and_evaluate(config, workdir, eval_only=True, out=out)
  return path


def keep(path: str, workdir: str, beam: int, keep_dir: str) -> None:
  """Copies an ablation's results.json to <keep>/<row>/<seed>/beam<B>/."""
  row, seed = os.path.normpath(workdir).split(os.sep)[-2:]
  target = os.path.join(keep_dir, row, seed, f'beam{beam}')
  os.makedirs(target, exist_ok=True)
  shutil.copyfile(path, os.path.join(target, 'results.json'))


def collect(keep_dir: str, split: str = 'test') -> dict[str, list[dict]]:
  """{'<row> (beam B)': [split metrics of each kept run, with 'beam']}, by row then width."""
  rows: dict[tuple[str, int], list[dict]] = {}
  for path in glob.glob(os.path.join(keep_dir, '*', '*', 'beam*', 'results.json')):
    beam = int(re.fullmatch(r'beam(\d+)', os.path.basename(os.path.dirname(path))).group(1))
    with open(path) as f:
      result = json.load(f)
    name = result['name'].split(' [')[0]  # the trained run's name, without the changes
    rows.setdefault((name, beam), []).append({**result['splits'][split], 'beam': beam})
  return {f'{name} (beam {beam})': runs for (name, beam), runs in sorted(rows.items())}


def report(keep_dir: str, out: str) -> str:
  rows = collect(keep_dir)
  figure = plots.scaling(rows, 'beam', FIGURE_METRICS, f'{out}.png',
                         where=f'test split, {tables.datasets(keep_dir)}', x_label='beam width')
  text = '\n\n'.join([f'# Beam width, from trained checkpoints ({tables.datasets(keep_dir)})',
                      '## Test split', tables.comparison_table(rows, ks=(10,)),
                      f'Figure: {os.path.basename(figure)}']) + '\n'
  with open(f'{out}.md', 'w') as f:
    f.write(text)
  return text


if __name__ == '__main__':
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--runs', default='', help='comma-separated workdirs of trained runs')
  parser.add_argument('--beams', default='10,20,50,100')
  parser.add_argument('--keep', required=True, help='where the results are kept')
  parser.add_argument('--out', default='', help='report prefix (default: no report)')
  args = parser.parse_args()
  beams = [int(b) for b in args.beams.split(',')]
  if min(beams) < 10:
    parser.error(f'--beams={args.beams}: every width must be >= 10, the largest eval K.')
  for workdir in filter(None, args.runs.split(',')):
    for beam in beams:
      keep(evaluate_at(workdir, beam), workdir, beam, args.keep)
  if args.out:
    print(report(args.keep, args.out))
