r"""GenAIR on MovieLens-100k: SASRec, BERT4Rec and GRU4Rec, each with and without GenAIR,
under both protocols (full ranking; 100 sampled negatives), paired by seed.

  nice -n 5 python -m launch.sweep --sweep=experiments/genair_table.py \
      --root=/work/runs/genair_table --keep=experiments/runs/genair_ml100k --seeds=0,1,2 \
      --report=experiments/genair_table_ml100k
or the report step alone:
  python experiments/genair_table.py --root=/work/runs/genair_table \
      --keep=experiments/runs/genair_ml100k --out=experiments/genair_table_ml100k

The sweep trains every row once (its results.json is the full-ranking protocol). The report
step then scores each finished run of --root again under the sampled protocol (the target
against 100 negatives drawn uniformly from the items the user never interacted with, ties
against the target; GenAIR's public protocol), writes that record as results_sampled.json
beside the kept results.json, and writes both tables and the paired with/without comparison
from the kept records. The GenAIR rows read experiments/archetypes/ml100k_smollm2_llm768.npy
(python -m genrec_jax.embed.archetypes, see configs/genair_ins.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

BACKBONES = (('SASRec', 'sasrec'), ('BERT4Rec', 'bert4rec'), ('GRU4Rec', 'gru4rec'))
# The GenAIR rows: on SmolLM2's archetypes (the method), and on MiniLM of the item metadata
# alone (an ablation without archetypes: the adapter and the calibration on a static text
# table, the kind of encoding the paper argues archetypes improve on).
GENAIR_ROWS = (('+ GenAIR', {}), ('+ GenAIR (item text)', {'embed.source': 'minilm'}))
SAMPLED_RECORD = 'results_sampled.json'


def get_sweep(variant: str, root: str) -> list[dict]:
  del root
  variant = variant or 'cpu'
  rows = [{'name': name, 'config': f'configs/genair_ins.py:{variant}_{bb}_plain',
           'overrides': {}} for name, bb in BACKBONES]  # the plain rows need no archetypes
  rows += [{'name': f'{name} {suffix}', 'config': f'configs/genair_ins.py:{variant}_{bb}',
            'overrides': dict(overrides)} for suffix, overrides in GENAIR_ROWS
           for name, bb in BACKBONES]
  return rows


def _repo_path():
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  if repo not in sys.path:
    sys.path.insert(0, repo)


def score_sampled(root: str, keep: str) -> list[str]:
  """Scores every finished run under root (a workdir with results.json and checkpoints)
  whose kept record (the run itself without `keep`) has no results_sampled.json yet, under
  the sampled protocol."""
  _repo_path()
  # pylint: disable=g-import-not-at-top
  from genrec_jax import run
  from genrec_jax.eval.evaluate import evaluate
  from genrec_jax.eval.evaluate import protocol_description
  done = []
  for row in sorted(os.listdir(root)) if os.path.isdir(root) else []:
    for seed in sorted(os.listdir(os.path.join(root, row))):
      workdir = os.path.join(root, row, seed)
      kept = os.path.join(keep or root, row, seed)  # without kept records, beside the run
      target = os.path.join(kept, SAMPLED_RECORD)
      if (not os.path.exists(os.path.join(workdir, 'results.json')) or
          os.path.exists(target) or not os.path.isdir(kept)):
        continue
      loaded = run.load_run(workdir)
      eval_config = loaded.config.eval
      eval_config.protocol = 'sampled'
      splits = {split: evaluate(loaded.method, loaded.params, loaded.dataset, split,
                                eval_config, loaded.config.seed) for split in ('valid', 'test')}
      with open(os.path.join(workdir, 'results.json')) as f:
        full = json.load(f)
      record = {k: full[k] for k in ('name', 'method', 'seed', 'dataset')}
      record.update(protocol=protocol_description(eval_config), splits=splits)
      with open(target, 'w') as f:
        json.dump(record, f, indent=2)
      done.append(target)
  return done


prepare_report = score_sampled  # what launch.sweep --report runs before report()


def _collect_sampled(keep: str) -> dict[str, list[dict]]:
  rows: dict[str, list[dict]] = {}
  for row in sorted(os.listdir(keep)):
    for seed in sorted(os.listdir(os.path.join(keep, row))):
      path = os.path.join(keep, row, seed, SAMPLED_RECORD)
      if os.path.exists(path):
        with open(path) as f:
          record = json.load(f)
        rows.setdefault(record['name'], []).append({**record['splits']['test'],
                                                    'seed': record['seed']})
  return rows


def _paired(rows: dict[str, list[dict]], metrics=('hr@10', 'ndcg@10', 'hr@20',
                                                     'ndcg@20')) -> str:
  """Per backbone, GenAIR row and metric: without, with, the change of the means, and
  each seed's change (paired by seed)."""
  from genrec_jax.report import tables  # pylint: disable=g-import-not-at-top
  lines = ['| row | metric | without | with | change | per seed (with − without) |',
           '|---|---|---|---|---|---|']
  for (name, _), (suffix, _) in ((b, g) for g in GENAIR_ROWS for b in BACKBONES):
    if name not in rows or f'{name} {suffix}' not in rows:
      continue
    base = {r['seed']: r for r in rows[name]}
    ours = {r['seed']: r for r in rows[f'{name} {suffix}']}
    seeds = sorted(set(base) & set(ours))
    if not seeds:
      continue
    for metric in metrics:
      b = [base[s][metric] for s in seeds]
      o = [ours[s][metric] for s in seeds]
      mean_b, mean_o = sum(b) / len(b), sum(o) / len(o)
      per_seed = ', '.join(f'{s}: {o_ - b_:+.4f}' for s, b_, o_ in zip(seeds, b, o))
      lines.append(f'| {name} {suffix} | {metric} | {mean_b:.4f} | {mean_o:.4f} | '
                   f'{tables.change_cell(mean_o, mean_b)} | {per_seed} |')
  return '\n'.join(lines)


def _table(rows: dict[str, list[dict]], metrics=('hr@10', 'ndcg@10', 'hr@20',
                                                    'ndcg@20')) -> str:
  from genrec_jax.report import tables  # pylint: disable=g-import-not-at-top
  order = [n for name, _ in BACKBONES
           for n in (name, *(f'{name} {suffix}' for suffix, _ in GENAIR_ROWS)) if n in rows]
  lines = ['| run | seeds | ' + ' | '.join(metrics) + ' |', '|---' * (len(metrics) + 2) + '|']
  for name in order:
    cells = [tables.mean_std_cell([r[metric] for r in rows[name]], metric) for metric in metrics]
    lines.append(f'| {name} | {len(rows[name])} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def report(keep: str, out: str) -> str:
  _repo_path()
  from genrec_jax.report import tables  # pylint: disable=g-import-not-at-top
  full = tables.collect(keep)
  sampled = _collect_sampled(keep)
  parts = ['## Full ranking (test; past items not masked; mean ± sample std over seeds)',
           _table(full), '### With against without GenAIR, paired by seed (full ranking)',
           _paired(full),
           '## 100 sampled negatives (test; GenAIR\'s public protocol, ties against the '
           'target)', _table(sampled),
           '### With against without GenAIR, paired by seed (sampled)', _paired(sampled),
           '## Run times on this machine (shared)', tables.timing_table(keep)]
  return tables.write_markdown(parts, out)


if __name__ == '__main__':
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--root', required=True, help='sweep root (workdirs with checkpoints)')
  parser.add_argument('--keep', required=True, help='kept records (experiments/runs/...)')
  parser.add_argument('--out', default='experiments/genair_table_ml100k')
  args = parser.parse_args()
  for path in score_sampled(args.root, args.keep):
    print('scored under the sampled protocol:', path)
  print(report(args.keep, args.out))
