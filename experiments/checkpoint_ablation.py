r"""Ablations from trained checkpoints, without retraining: runs evaluated again with one
eval.* or decode.* field set to each of several values.

  python experiments/checkpoint_ablation.py --field=decode.beam_size --values=10,20,50,100 \
      --runs=runs/ghost_table/LC-Rec_per_prefix/seed1,... \
      --keep=experiments/runs/beam_width_ml100k --out=experiments/beam_width_ml100k
  python experiments/checkpoint_ablation.py --field=eval.mask_history --values=false,true \
      --runs=runs/ghost_table/SASRec/seed0,... --keep=experiments/runs/mask_history_ml100k \
      --out=experiments/mask_history_ml100k
(leave --runs out to rebuild the report from the kept records alone).

Each run's best checkpoint is evaluated on its valid and test splits at each value, as
`python -m genrec_jax.main --mode=eval --workdir=RUN --config.<field>=<value>
--out=RUN/ablations/<field>=<value>` would (values already evaluated are read back, so the
script resumes); the run's own results are never touched. Each result is copied to
<keep>/<row>/<seed>/<field>=<value>/results.json; <out>.md (test metrics per row and value,
mean ± std over the runs of a row) and, for numeric values, <out>.png (HR@10, tail HR@10,
MGU@10 against the value, log scale) are written from those copies. A beam narrower than one
of the run's eval Ks drops that K (a beam ranks only B items).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from genrec_jax import config as config_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from genrec_jax import run  # pylint: disable=g-import-not-at-top,wrong-import-position
from genrec_jax.report import plots  # pylint: disable=g-import-not-at-top,wrong-import-position
from genrec_jax.report import tables  # pylint: disable=g-import-not-at-top,wrong-import-position
from launch import sweep  # pylint: disable=g-import-not-at-top,wrong-import-position

FIGURE_METRICS = (('hr@10', 'HR@10'), ('hr@10/tail', 'tail HR@10'), ('mgu@10', 'MGU@10'))


def parse_value(text: str):
  """'20' -> 20, '0.5' -> 0.5, 'true' -> True; anything else stays a string."""
  try:
    return json.loads(text.lower() if text.lower() in ('true', 'false') else text)
  except json.JSONDecodeError:
    return text


def evaluate_at(workdir: str, field: str, value) -> str:
  """RUN/ablations/<field>=<value>/results.json of `workdir`'s best checkpoint evaluated with
  `field` set to `value` (evaluated unless already there)."""
  if not field.startswith(('eval.', 'decode.')):
    raise ValueError(f'--field={field}: only eval.* and decode.* fields act after training.')
  out = os.path.join(workdir, 'ablations', f'{field}={value}')
  path = os.path.join(out, 'results.json')
  if not os.path.exists(path):
    config = run.saved_config(os.path.join(workdir, 'config.json'))
    config_lib.set_field(config, field, value)
    if field == 'decode.beam_size':  # a beam ranks only B items
      config.eval.ks = tuple(k for k in config.eval.ks if k <= value)
    run.train_and_evaluate(config, workdir, eval_only=True, out=out)
  return path


def keep(path: str, workdir: str, keep_dir: str) -> None:
  """Copies an ablation's results.json to <keep>/<row>/<seed>/<field>=<value>/."""
  target = os.path.join(keep_dir, sweep.run_label(workdir),
                        os.path.basename(os.path.dirname(path)))
  os.makedirs(target, exist_ok=True)
  shutil.copyfile(path, os.path.join(target, 'results.json'))


def collect(keep_dir: str, split: str = 'test') -> tuple[str, dict[str, list[dict]]]:
  """(the field, {'<row> (<field>=<value>)': [split metrics of each kept run, with 'value'
  where it is a number]}), by row then value."""
  rows: dict[tuple, list[dict]] = {}
  fields = set()
  for path in glob.glob(os.path.join(keep_dir, '*', '*', '*=*', 'results.json')):
    field, text = os.path.basename(os.path.dirname(path)).split('=', 1)
    fields.add(field)
    value = parse_value(text)
    with open(path) as f:
      result = json.load(f)
    name = result['name'].split(' [')[0]  # the trained run's name, without the changes
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    rows.setdefault((name, value), []).append(
        {**result['splits'][split], **({'value': value} if numeric else {})})  # the x axis
  if len(fields) != 1:
    raise ValueError(f'{keep_dir}: one field per keep directory, found {sorted(fields)}.')
  field = fields.pop()
  return field, {f'{name} ({field.split(".")[-1]}={value})': runs
                 for (name, value), runs in sorted(rows.items())}


def report(keep_dir: str, out: str) -> str:
  field, rows = collect(keep_dir)
  where = tables.datasets(keep_dir)
  parts = [f'# {field} from trained checkpoints ({where})', '## Test split',
           tables.comparison_table(rows, ks=(10,))]
  if all('value' in runs[0] for runs in rows.values()):  # numeric values: a figure too
    figure = plots.scaling(rows, 'value', FIGURE_METRICS, f'{out}.png',
                           where=f'test split, {where}', x_label=field)
    parts.append(f'Figure: {os.path.basename(figure)}')
  return tables.write_markdown(parts, out)


if __name__ == '__main__':
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--field', default='', help='an eval.* or decode.* field')
  parser.add_argument('--values', default='', help='comma-separated values of --field')
  parser.add_argument('--runs', default='', help='comma-separated workdirs of trained runs')
  parser.add_argument('--keep', required=True, help='where the results are kept')
  parser.add_argument('--out', default='', help='report prefix (default: no report)')
  args = parser.parse_args()
  for workdir in filter(None, args.runs.split(',')):
    for value in map(parse_value, args.values.split(',')):
      keep(evaluate_at(workdir, args.field, value), workdir, args.keep)
  if args.out:
    print(report(args.keep, args.out))
