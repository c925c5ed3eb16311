r"""Ghost's Tables I and II on MovieLens-100k (`cpu`) or the papers' Instruments data (`ins`).

Run every row for several seeds, then write the tables and figures:
  python -m launch.sweep --sweep=experiments/ghost_table.py --sweep_arg=cpu \
      --root=runs/ghost_table --keep=experiments/runs/ghost_ml100k --seeds=0,1,2 \
      --report=experiments/ghost_table_ml100k
and on Instruments (LC-Rec format, no item text: co-occurrence item vectors):
  python -m launch.sweep --sweep=experiments/ghost_table.py --sweep_arg=ins \
      --root=runs/ghost_ins --keep=experiments/runs/ghost_ins --seeds=0,1,2 \
      --report=experiments/ghost_table_ins_prefix
The report alone, from the kept records (seconds):
  python experiments/ghost_table.py --root=experiments/runs/ghost_ml100k \
      --out=experiments/ghost_table_ml100k
(experiments/ghost_table_ins.md is the whole-sequence table of 2026-12-02, whose records were
lost; it is not regenerated.)
`--keep` copies each finished run's record into the repository (experiments/runs/), so the
report is rebuilt from committed records and later seeds add to them.

LETTER's tokenizer and the CF-SID rows read the item embeddings of the SASRec run of seed 0
(for every seed), so the sweep runs it first, again if only its record is kept. Every row uses
the same protocol (full ranking, past items not masked, leave-one-out, ties in time kept in file
order) and the same training budget. On `ins` the LETTER row uses LETTER's own published SIDs
(Instruments.index.json).
"""

from __future__ import annotations

import argparse
import os
import sys

TABLE_1 = ('Pop', 'SASRec', 'LC-Rec', 'LC-Rec (per prefix)', 'LC-Rec (prompt)', 'TIGER',
           'LETTER (lcrec)', 'LETTER SIDs (lcrec)', 'IFairLRS-RW', 'IFairLRS-RR', 'Augmentation',
           'LETTER SIDs (lcrec, per prefix)', 'Substitution', 'Ghost', 'Ghost (per prefix)')
TABLE_2 = ('Ghost', 'Ghost w/o AUO', 'Ghost w/o SKT', 'LC-Rec', 'RQK-4', 'RQK-6', 'RQK-4-6',
           'Ghost (per prefix)', 'Ghost w/o AUO (per prefix)', 'LC-Rec (per prefix)',
           'RQK-4 (per prefix)')
# The per-example rows on Instruments: an epoch budget of 3 (about 4.9k steps of 32 examples
# each), stopped early on validation NDCG@10.
INS_PER_EXAMPLE = {'train.example_kind': 'prefix', 'train.num_epochs': 3,
                   'train.early_stop_patience': 1}
# Beyond the paper: item-level scoring (SimGR) beside the per-prefix generative rows, on
# LC-Rec's SIDs and on Ghost's SKT SIDs (does item-level scoring remove the branching-point
# bias SKT targets?).
SIMGR_ROWS = ('LC-Rec (per prefix)', 'SimGR', 'SimGR (no SID heads)', 'Ghost (per prefix)',
              'SimGR (SKT SIDs)', 'SimGR (SKT SIDs, AUO)')
# AUO's distractors mined from LC-Rec (per prefix) seed 1's beam on MovieLens-100k's training
# examples (experiments/distractors/ml100k_lcrec_prefix_seed1.json says how).
MINED_ML100K = 'experiments/distractors/ml100k_lcrec_prefix_seed1.npy'
MINED_ROWS = ('LC-Rec (per prefix)', 'Ghost (per prefix)', 'Ghost (mined distractors, per prefix)')
# GENPLUGIN (issue 20) beside the row it wraps, all trained per example.
GENPLUGIN_ROWS = (('LC-Rec (per prefix)', 'LC-Rec + GENPLUGIN'), ('TIGER', 'TIGER + GENPLUGIN'),
                  ('Ghost (per prefix)', 'Ghost + GENPLUGIN'))
# Diagnostic (not in the paper): the same rows with SIDs built from SASRec item vectors instead
# of item text, to see how much the text embeddings limit the SID-based rows.
CF_ROWS = ('LC-Rec', 'LC-Rec (CF SIDs)', 'Ghost', 'Ghost (CF SIDs)', 'LETTER (lcrec)')

# The Ghost paper's Instruments rows (Tables I and II, Qwen2.5-3B backbone; tail slots of the
# top-1 lists of its 24,772 users from its Fig. 5). Only to compare directions: the backbone
# (and on MovieLens-100k the data) differ.
PAPER_INS = {
    'LC-Rec': {'hr@10': 0.1046, 'hr@10/tail': 0.0044, 'ndcg@10': 0.0804,
               'ndcg@10/tail': 0.0027, 'mgu@10': 0.3380, 'arp@10': 338.5304,
               'tail_slots@1': 560},
    'LETTER': {'hr@10': 0.0662, 'hr@10/tail': 0.0044, 'ndcg@10': 0.0553,
               'ndcg@10/tail': 0.0023, 'mgu@10': 0.1442, 'arp@10': 151.7149},
    'Ghost': {'hr@10': 0.1017, 'hr@10/tail': 0.0173, 'ndcg@10': 0.0805,
              'ndcg@10/tail': 0.0097, 'mgu@10': 0.0958, 'arp@10': 209.8877,
              'tail_slots@1': 9400},
    'Ghost w/o AUO': {'hr@10': 0.1003, 'hr@10/tail': 0.0161, 'ndcg@10': 0.0782,
                      'ndcg@10/tail': 0.0091, 'mgu@10': 0.0112, 'arp@10': 235.9759},
    'Ghost w/o SKT': {'hr@10': 0.1102, 'hr@10/tail': 0.0095, 'ndcg@10': 0.0856,
                      'ndcg@10/tail': 0.0058, 'mgu@10': 0.3056, 'arp@10': 357.7677},
}


def get_sweep(variant: str, root: str) -> list[dict]:
  variant = variant or 'cpu'
  if variant == 'ins':
    rows = [('Pop', 'configs/pop_ins.py:ins', {}),
            ('SASRec', 'configs/sasrec_ins.py:ins', {}),
            ('LC-Rec', 'configs/lcrec_ins.py:ins', {}),
            ('Ghost', 'configs/ghost_ins.py:ins', {}),
            ('LETTER SIDs (lcrec)', 'configs/letter_ins.py:ins', {}),
            ('Ghost w/o AUO', 'configs/ghost_ins.py:ins_noauo', {}),
            # Trained per example, as LC-Rec trains (issue 23): validation NDCG@10 after each
            # epoch, the best checkpoint kept, a stop after an epoch without a better one.
            ('LC-Rec (per prefix)', 'configs/lcrec_ins.py:ins_prefix', dict(INS_PER_EXAMPLE)),
            ('Ghost (per prefix)', 'configs/ghost_ins.py:ins', dict(INS_PER_EXAMPLE)),
            ('Ghost w/o AUO (per prefix)', 'configs/ghost_ins.py:ins_noauo',
             dict(INS_PER_EXAMPLE)),
            ('LETTER SIDs (lcrec, per prefix)', 'configs/letter_ins.py:ins',
             dict(INS_PER_EXAMPLE)),
            # Issue 23's change: AUO against the head items LC-Rec (per prefix, seed 1) ranks
            # above each tail training target, mined inside the run (ghost.distractors_run).
            ('Ghost (mined distractors, per prefix)', 'configs/ghost_ins.py:ins',
             {**INS_PER_EXAMPLE, 'ghost.distractors_run': os.path.join(
                 root, 'LC-Rec_per_prefix', 'seed1')})]
  else:
    rows = [  # cheapest and most telling first, so a partial sweep is already useful
        ('SASRec', f'configs/sasrec_ins.py:{variant}', {}),
        ('LC-Rec', f'configs/lcrec_ins.py:{variant}', {}),
        ('Ghost', f'configs/ghost_ins.py:{variant}', {}),
        ('Ghost w/o AUO', f'configs/ghost_ins.py:{variant}_noauo', {}),
        ('Ghost w/o SKT', f'configs/ghost_ins.py:{variant}_noskt', {}),
        ('IFairLRS-RW', f'configs/ifairlrs_ins.py:{variant}_rw', {}),
        ('IFairLRS-RR', f'configs/ifairlrs_ins.py:{variant}_rr', {}),
        ('Augmentation', f'configs/augment_ins.py:{variant}_augment', {}),
        ('Substitution', f'configs/augment_ins.py:{variant}_substitute', {}),
        ('LETTER (lcrec)', f'configs/letter_ins.py:{variant}', {}),
        ('RQK-4', f'configs/lcrec_ins.py:{variant}_rqk4', {}),
        ('RQK-6', f'configs/lcrec_ins.py:{variant}_rqk6', {}),
        ('RQK-4-6', f'configs/ghost_ins.py:{variant}_rqk46', {}),
        ('TIGER', f'configs/tiger_ins.py:{variant}', {}),
        ('LC-Rec (CF SIDs)', f'configs/lcrec_ins.py:{variant}', {}),
        ('Ghost (CF SIDs)', f'configs/ghost_ins.py:{variant}', {}),
        # LC-Rec's instruction prompt around the SIDs (one example per prefix: ~13x the
        # stream's epoch time here).
        ('LC-Rec (prompt)', f'configs/lcrec_ins.py:{variant}_prompt', {}),
        # The bare SIDs trained per prefix, as LC-Rec trains (the prompt row without its
        # text): 28x the optimizer updates of whole-sequence training at the same batch size.
        ('LC-Rec (per prefix)', f'configs/lcrec_ins.py:{variant}_prefix', {}),
        ('Ghost (per prefix)', f'configs/ghost_ins.py:{variant}',
         {'train.example_kind': 'prefix'}),
        ('Ghost w/o AUO (per prefix)', f'configs/ghost_ins.py:{variant}_noauo',
         {'train.example_kind': 'prefix'}),
        ('RQK-4 (per prefix)', f'configs/lcrec_ins.py:{variant}_rqk4_prefix', {}),
        # SKT's anchor rule before issue 25 (anchor in the full embedding space, residual in
        # PCA-32): separates that fix from the time order in Ghost (per prefix)'s change.
        ('Ghost (per prefix, full-space anchors)', f'configs/ghost_ins.py:{variant}',
         {'train.example_kind': 'prefix', 'tokenize.skt_anchor_space': 'full'}),
        # Beyond the paper (issue 23's measurement): AUO against the head items LC-Rec (per
        # prefix, seed 1) ranks above each tail target in training, instead of the similar
        # head items with the shortest common prefix; mined to a file before
        # ghost.distractors_run existed (experiments/mine_distractors.py, deterministic: the
        # same items as mining inside the run).
        ('Ghost (mined distractors, per prefix)', f'configs/ghost_ins.py:{variant}',
         {'train.example_kind': 'prefix', 'ghost.distractors_npy': MINED_ML100K}),
        # SimGR: an item-level softmax over the catalogue on LC-Rec's decoder (its SID heads
        # trained jointly for experiments/simgr_diagnostics.py), per prefix like the rows
        # above; on LC-Rec's RQ-VAE SIDs and on Ghost's SKT SIDs.
        ('SimGR', f'configs/simgr_ins.py:{variant}', {}),
        ('SimGR (SKT SIDs)', f'configs/simgr_ins.py:{variant}_skt', {}),
        ('SimGR (SKT SIDs, AUO)', f'configs/simgr_ins.py:{variant}_skt_auo', {}),
        # The paper's SimGR: the item loss alone (how much the joint SID heads cost it).
        ('SimGR (no SID heads)', f'configs/simgr_ins.py:{variant}_pure', {}),
        # GENPLUGIN around the per-prefix LC-Rec and Ghost rows and TIGER (two phases; the
        # second retrieves users by SASRec seed 0's user vectors).
        ('LC-Rec + GENPLUGIN', f'configs/genplugin_ins.py:{variant}_lcrec', {}),
        ('TIGER + GENPLUGIN', f'configs/genplugin_ins.py:{variant}_tiger', {}),
        ('Ghost + GENPLUGIN', f'configs/genplugin_ins.py:{variant}_ghost', {}),
    ]
  sasrec = os.path.join(root, 'SASRec', 'seed0')
  sweep = [{'name': n, 'config': c, 'overrides': o} for n, c, o in rows]
  for row in sweep:
    if 'ghost.distractors_run' in row['overrides']:
      row['needs'] = [('LC-Rec (per prefix)', 1)]
    if row['name'] == 'LETTER (lcrec)':
      row['overrides']['embed.cf_run'] = sasrec
      row['needs'] = [('SASRec', 0)]
    if row['name'].endswith('+ GENPLUGIN'):
      row['overrides']['embed.cf_run'] = sasrec
      row['needs'] = [('SASRec', 0)]
    if row['name'].endswith('(CF SIDs)'):
      row['overrides'].update({'embed.source': 'run', 'embed.cf_run': sasrec,
                               'embed.unit_norm': True})
      row['needs'] = [('SASRec', 0)]
  return sweep


def report(root: str, out: str) -> str:
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from genrec_jax.report import plots  # pylint: disable=g-import-not-at-top
  from genrec_jax.report import tables  # pylint: disable=g-import-not-at-top
  rows = tables.collect(root)
  table_1 = {n: rows[n] for n in TABLE_1 if n in rows}
  table_2 = {n: rows[n] for n in TABLE_2 if n in rows}
  parts = ['## Table I (test split, mean ± sample std over seeds; CNS across these rows)',
           tables.comparison_table(table_1),
           '## Table II: ablations', tables.comparison_table(table_2)]
  for method in ('Ghost', 'Ghost w/o AUO', 'Ghost w/o SKT'):
    if method in rows and 'LC-Rec' in rows:
      parts += [f'## {method} against LC-Rec (paper change: its Instruments rows)',
                tables.direction_table(rows, method, 'LC-Rec', PAPER_INS)]
  # The paper trains every row per example: its rows stand beside our per-prefix ones too.
  paper = {**PAPER_INS, **{f'{name} (per prefix)': PAPER_INS[name] for name in PAPER_INS},
           # mining aims at the paper's Ghost: its column is the paper's Ghost against LC-Rec
           'Ghost (mined distractors, per prefix)': PAPER_INS['Ghost']}
  for method in ('Ghost (per prefix)', 'Ghost w/o AUO (per prefix)'):
    if method in rows and 'LC-Rec (per prefix)' in rows:
      parts += [f'## {method} against LC-Rec (per prefix)',
                tables.direction_table(rows, method, 'LC-Rec (per prefix)', paper)]
  if 'Ghost (mined distractors, per prefix)' in rows:
    parts += ['## AUO against mined distractors (beyond the paper)',
              tables.comparison_table({n: rows[n] for n in MINED_ROWS if n in rows})]
    if 'Ghost (per prefix)' in rows:
      parts += ['### Ghost (mined distractors, per prefix) against Ghost (per prefix)',
                tables.direction_table(rows, 'Ghost (mined distractors, per prefix)',
                                       'Ghost (per prefix)')]
    if 'LC-Rec (per prefix)' in rows:
      parts += ['### Ghost (mined distractors, per prefix) against LC-Rec (per prefix)',
                tables.direction_table(rows, 'Ghost (mined distractors, per prefix)',
                                       'LC-Rec (per prefix)', paper)]
  if 'SimGR' in rows or 'SimGR (SKT SIDs)' in rows:
    parts += ['## Item-level scoring (SimGR) beside the per-prefix generative rows',
              tables.comparison_table({n: rows[n] for n in SIMGR_ROWS if n in rows})]
  if 'Ghost (CF SIDs)' in rows and 'LC-Rec (CF SIDs)' in rows:
    parts += ['## Diagnostic: SIDs from SASRec item vectors instead of item text',
              tables.comparison_table({n: rows[n] for n in CF_ROWS if n in rows}),
              '### Ghost (CF SIDs) against LC-Rec (CF SIDs)',
              tables.direction_table(rows, 'Ghost (CF SIDs)', 'LC-Rec (CF SIDs)')]
  plugged = [(x, y) for x, y in GENPLUGIN_ROWS if x in rows and y in rows]
  if plugged:
    parts += ['## X + GENPLUGIN beside X (per example)',
              tables.comparison_table({n: rows[n] for pair in plugged for n in pair})]
    for x, y in plugged:
      parts += [f'### {y} against {x}', tables.direction_table(rows, y, x)]
  parts += ['## Run times on this machine (shared by the sweep\'s parallel jobs)',
            tables.timing_table(root)]
  where = f'{tables.datasets(root)}, test split'
  figures = [plots.composition(table_1, 10, f'{out}_composition.png', where),
             plots.group_hit_rates(table_1, 10, 5, f'{out}_group_hr.png', where),
             plots.pareto(table_1, 10, f'{out}_pareto.png', where)]
  parts.append('Figures: ' + ', '.join(os.path.basename(f) for f in figures))
  return tables.write_markdown(parts, out)


if __name__ == '__main__':
  # argparse, not absl flags: launch.sweep imports this file for get_sweep.
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--root', required=True, help='sweep root (a workdir per row and seed)')
  parser.add_argument('--out', default='experiments/ghost_table', help='report file prefix')
  args = parser.parse_args()
  print(report(args.root, args.out))
