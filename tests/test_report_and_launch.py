"""Sweep expansion, the SLURM script, and the comparison report with its figures."""

import json
import os
import pathlib
import shlex
import signal
import subprocess
import sys
import time

import matplotlib
import numpy as np
import pytest

from experiments import ghost_scaling
from experiments import ghost_sensitivity
from experiments import ghost_table
from genrec_jax.report import plots
from genrec_jax.report import tables
from launch import sweep

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _record_writer(workdir):
  """A stand-in for genrec_jax.main that writes a run's record files: its own, a later
  training phase's (finetune/, with checkpoints) and an eval output's (no checkpoints)."""
  return [sys.executable, '-c', (
      'import json, os, sys; d = sys.argv[1]\n'
      'for sub in ("finetune/checkpoints", "eval"):\n'
      '  os.makedirs(os.path.join(d, sub), exist_ok=True)\n'
      'for f in ("config.json", "metrics.jsonl", "finetune/metrics.jsonl",\n'
      '          "finetune/retrieval.json", "eval/metrics.jsonl", "results.json"):\n'
      '  open(os.path.join(d, f), "w").write(json.dumps({"file": f}))'), workdir]


PHASE_RECORD = ('finetune/metrics.jsonl', 'finetune/retrieval.json')


def test_ghost_table_sweep_expands_to_valid_commands(tmp_path):
  rows = sweep.load_sweep(os.path.join(REPO, 'experiments/ghost_table.py'), 'smoke',
                          str(tmp_path))
  names = [r['name'] for r in rows]
  assert names[0] == 'SASRec' and 'Ghost' in names and 'RQK-4-6' in names
  # Every row of the report's tables can be run, but LETTER's published SIDs (Instruments)
  # and Pop (deterministic: one run of configs/pop_ml100k.py).
  tabled = set(ghost_table.TABLE_1 + ghost_table.TABLE_2)
  assert tabled - set(names) == {'LETTER SIDs (lcrec)', 'LETTER SIDs (lcrec, per prefix)', 'Pop'}
  runs = sweep.expand(rows, str(tmp_path), ['0', '1'])
  assert len(runs) == 2 * len(rows)
  letter = next(r for r in runs if r['name'].startswith('LETTER'))
  assert f'--config.embed.cf_run={tmp_path}/SASRec/seed0' in letter['command']
  assert letter['workdir'].endswith('LETTER_lcrec/seed0')
  script = sweep.write_slurm(runs, str(tmp_path), '--gres=gpu:1')
  text = open(script).read()
  assert f'#SBATCH --array=1-{len(runs)}' in text and '#SBATCH --gres=gpu:1' in text
  assert len(open(tmp_path / 'sweep.runs.txt').read().splitlines()) == len(runs)


def test_local_sweep_keeps_records_and_skips_kept_runs(tmp_path):
  rows = [{'name': 'Ghost w/o AUO', 'config': 'configs/ghost_ins.py:smoke', 'overrides': {}}]
  runs = sweep.expand(rows, str(tmp_path / 'root'), ['0', '1'], keep=str(tmp_path / 'kept'))
  assert runs[1]['kept'] == str(tmp_path / 'kept' / 'Ghost_w_o_AUO' / 'seed1')
  for spec in runs:
    spec['command'] = _record_writer(spec['workdir'])
  assert sweep.run_local(runs) == 0
  for spec in runs:
    for name in (*sweep.RECORD_FILES, *PHASE_RECORD):
      assert json.load(open(os.path.join(spec['kept'], name))) == {'file': name}
    assert not os.path.exists(os.path.join(spec['kept'], 'eval'))
  # On a new machine (root gone) the kept runs are not run again; a new seed is.
  fresh = sweep.expand(rows, str(tmp_path / 'new_root'), ['0', '1', '2'],
                       keep=str(tmp_path / 'kept'))
  for spec in fresh:
    spec['command'] = [sys.executable, '-c', 'raise SystemExit(3)']
  assert sweep.run_local(fresh) == 1  # only seed 2 ran (and failed)
  assert not os.path.exists(fresh[0]['workdir']) and os.path.exists(fresh[2]['workdir'])
  script = sweep.write_slurm(fresh[2:], str(tmp_path / 'new_root'), '')
  line = open(tmp_path / 'new_root' / 'sweep.runs.txt').read().strip()
  assert script.endswith('sweep.sbatch')
  # The job keeps the record as the local launcher does, once the run succeeded.
  run_part, keep_part = line.split(' && ')
  assert shlex.split(run_part) == fresh[2]['command']
  subprocess.check_call(_record_writer(fresh[2]['workdir']))
  subprocess.check_call(keep_part, shell=True, cwd=REPO)
  for name in (*sweep.RECORD_FILES, *PHASE_RECORD):
    assert json.load(open(os.path.join(fresh[2]['kept'], name))) == {'file': name}


def test_needed_runs_run_first_even_when_only_their_record_is_kept(tmp_path):
  rows = [{'name': 'SASRec', 'config': 'configs/sasrec_ins.py:smoke'},
          {'name': 'LETTER', 'config': 'configs/letter_ins.py:smoke', 'needs': [('SASRec', 0)]}]
  kept = str(tmp_path / 'kept')
  runs = sweep.expand(rows, str(tmp_path / 'root'), ['1'], keep=kept, only=['LETTER'])
  assert [(r['name'], r['seed']) for r in runs] == [('SASRec', 0), ('LETTER', 1)]
  assert runs[1]['needs'] == [runs[0]['workdir']]
  for spec in runs:
    spec['command'] = _record_writer(spec['workdir'])
  assert sweep.run_local(runs) == 0 and sweep.is_kept(runs[0])
  # New machine: SASRec seed 0 is kept but its workdir is gone; a pending LETTER run needs it.
  fresh = sweep.expand(rows, str(tmp_path / 'new'), ['1', '2'], keep=kept, only=['LETTER'])
  assert [r['seed'] for r in sweep.to_run(fresh)] == [0, 2]
  fresh[0]['command'] = [sys.executable, '-c', 'raise SystemExit(3)']
  fresh[2]['command'] = _record_writer(fresh[2]['workdir'])
  assert sweep.run_local(fresh) == 2  # SASRec failed, so LETTER seed 2 was not started
  assert not os.path.exists(os.path.join(fresh[2]['workdir'], 'results.json'))
  # SLURM: the needed run in a first array, the rest after it succeeded.
  line = sweep.submit_slurm(sweep.to_run(fresh), str(tmp_path / 'new'), '')
  assert line.index('sweep0.sbatch') < line.index('--dependency=afterok:$job')
  assert line.index('--dependency=afterok:$job') < line.index('sweep.sbatch')
  assert open(tmp_path / 'new' / 'sweep0.runs.txt').read().count('\n') == 1
  assert 'LETTER' in open(tmp_path / 'new' / 'sweep.runs.txt').read()
  # Re-run for LETTER, SASRec seed 0 leaves its kept record as it was (a re-run is another
  # draw of the last float bits, not the run the tables averaged).
  kept_result = os.path.join(fresh[0]['kept'], 'results.json')
  before = open(kept_result).read()
  fresh[0]['command'] = [sys.executable, '-c', (
      'import os, sys; open(os.path.join(sys.argv[1], "results.json"), "w").write("{}")'),
                         fresh[0]['workdir']]
  assert sweep.run_local(fresh) == 0 and open(kept_result).read() == before
  assert os.path.exists(os.path.join(fresh[2]['kept'], 'results.json'))  # the new run is kept
  with pytest.raises(ValueError, match='--only names rows the sweep lacks'):
    sweep.expand(rows, str(tmp_path), ['0'], only=['LETER'])


def _timed_run(workdir, seconds=1.5, code=0):
  """A stand-in run that records when it ran and on which CPUs, then exits with `code`."""
  return [sys.executable, '-c', (
      'import json, os, sys, time; d = sys.argv[1]; start = time.time()\n'
      f'time.sleep({seconds})\n'
      'cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []\n'
      f'if {code}: raise SystemExit({code})\n'
      'open(os.path.join(d, "results.json"), "w").write(json.dumps(\n'
      '    {"start": start, "end": time.time(), "cpus": cpus}))'), workdir]


def test_jobs_run_side_by_side_on_their_own_cpus_and_after_what_they_need(tmp_path):
  rows = [{'name': 'A', 'config': 'a'}, {'name': 'B', 'config': 'b'},
          {'name': 'C', 'config': 'c', 'needs': [('A', 0)]}]
  runs = sweep.expand(rows, str(tmp_path / 'root'), ['0'])
  for spec in runs:
    spec['command'] = _timed_run(spec['workdir'])
  assert sweep.run_local(runs, jobs=2) == 0
  a, b, c = (json.load(open(os.path.join(r['workdir'], 'results.json'))) for r in runs)
  assert b['start'] < a['end'] and a['start'] < b['end']  # side by side
  assert c['start'] >= a['end']  # after the run it needs
  if len(os.sched_getaffinity(0)) >= 2:
    assert a['cpus'] and b['cpus'] and not set(a['cpus']) & set(b['cpus'])
  # A fails: C, which needs it, is not started; B still runs.
  again = sweep.expand(rows, str(tmp_path / 'again'), ['0'])
  again[0]['command'] = _timed_run(again[0]['workdir'], seconds=0.5, code=3)
  for spec in again[1:]:
    spec['command'] = _timed_run(spec['workdir'], seconds=0.1)
  assert sweep.run_local(again, jobs=2) == 2
  assert [os.path.exists(os.path.join(r['workdir'], 'results.json')) for r in again] == [
      False, True, False]
  with pytest.raises(ValueError, match='--jobs=4096'):
    sweep.run_local(again, jobs=4096)


def test_status_says_where_each_run_stands(tmp_path):
  rows = [{'name': 'Ghost (per prefix)', 'config': 'configs/ghost_ins.py:smoke'}]
  runs = sweep.expand(rows, str(tmp_path / 'root'), ['0', '1', '2', '3'],
                      keep=str(tmp_path / 'kept'))
  kept, finished, running, _ = (spec['workdir'] for spec in runs)
  for workdir in (kept, finished, running):
    os.makedirs(os.path.join(workdir, 'checkpoints', 'state', '500'))
    (pathlib.Path(workdir) / 'config.json').write_text('{}')
  for workdir in (kept, finished):
    (pathlib.Path(workdir) / 'results.json').write_text('{}')
  sweep.keep_record(runs[0])
  log = 'Training Ghost (per prefix): 9042 steps (3014 per epoch)\nGhost: 8%|'
  (pathlib.Path(running) / 'log.txt').write_text(log)
  (pathlib.Path(running) / 'metrics.jsonl').write_text(
      '{"event": "train", "step": 500}\n{"event": "train", "step": 620}\n')
  assert sweep.status(runs).splitlines() == [
      f'Ghost (per prefix) seed 0: kept in {runs[0]["kept"]}',
      'Ghost (per prefix) seed 1: finished (the next launch keeps its record)',
      'Ghost (per prefix) seed 2: step 620 of 9042 logged; a relaunch resumes from step 500',
      'Ghost (per prefix) seed 3: not started']


def test_only_keeps_commas_inside_a_row_name():
  assert sweep.row_names('Ghost, SimGR (SKT SIDs, AUO),LETTER SIDs (lcrec, per prefix)') == [
      'Ghost', 'SimGR (SKT SIDs, AUO)', 'LETTER SIDs (lcrec, per prefix)']
  assert sweep.row_names('') == []
  table = os.path.join(REPO, 'experiments', 'ghost_table.py')
  names = [row['name'] for row in sweep.load_sweep(table, 'ins', 'r')]
  assert sweep.row_names(','.join(names)) == names  # every row of the table by name


def test_keep_refuses_a_directory_git_ignores(tmp_path):
  subprocess.run(['git', 'init', '-q', str(tmp_path)], check=True)
  (tmp_path / '.gitignore').write_text('runs/\n')
  with pytest.raises(ValueError, match=r'\.gitignore:1:runs/'):
    sweep.check_keep_is_committable(str(tmp_path / 'experiments' / 'runs' / 'table'))
  sweep.check_keep_is_committable(str(tmp_path / 'experiments' / 'kept'))
  # This repository keeps its records under experiments/runs/ (checked where it is a clone).
  sweep.check_keep_is_committable(os.path.join(REPO, 'experiments', 'runs', 'ghost_ml100k'))


def _fake_run(root, name, seed, rng):
  metrics = {}
  for k in (5, 10):
    metrics.update({f'hr@{k}': rng.random(), f'hr@{k}/tail': rng.random(),
                    f'ndcg@{k}': rng.random(), f'ndcg@{k}/tail': rng.random(),
                    f'mgu@{k}': rng.random(), f'arp@{k}': 100 * rng.random(),
                    f'head_slots@{k}': 50.0, f'tail_slots@{k}': 10.0})
    metrics.update({f'hr@{k}/group{g}': rng.random() for g in range(5)})
  workdir = os.path.join(root, name, f'seed{seed}')
  os.makedirs(workdir)
  with open(os.path.join(workdir, 'results.json'), 'w') as f:
    json.dump({'name': name, 'seed': seed, 'splits': {'test': metrics}}, f)
  return metrics


def test_comparison_table_means_and_cns(tmp_path):
  rng = np.random.default_rng(0)
  runs = {name: [_fake_run(tmp_path, name, s, rng) for s in range(2)]
          for name in ('LC-Rec', 'Ghost', 'TIGER')}
  rows = tables.collect(str(tmp_path))
  assert sorted(rows) == ['Ghost', 'LC-Rec', 'TIGER'] and len(rows['Ghost']) == 2
  table = tables.comparison_table(rows)
  ghost_line = next(line for line in table.splitlines() if line.startswith('| Ghost'))
  mean = np.mean([r['hr@10'] for r in runs['Ghost']])
  std = np.std([r['hr@10'] for r in runs['Ghost']], ddof=1)
  assert f'{mean:.4f} ± {std:.4f}' in ghost_line


def test_ghost_table_report_writes_tables_and_figures(tmp_path):
  rng = np.random.default_rng(1)
  for name in ('LC-Rec', 'Ghost', 'Ghost w/o AUO', 'LC-Rec (per prefix)',
               'Ghost (mined distractors, per prefix)'):
    _fake_run(tmp_path / 'runs', name, 0, rng)
  out = str(tmp_path / 'report')
  result = subprocess.run([sys.executable, 'experiments/ghost_table.py',
                           f'--root={tmp_path / "runs"}', f'--out={out}'], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  text = open(out + '.md').read()
  assert '## Table I' in text and '| Ghost w/o AUO |' in text
  # mined distractors against LC-Rec, beside the paper's Ghost against LC-Rec (ARP -38.0%)
  mined = text.split('### Ghost (mined distractors, per prefix) against LC-Rec (per prefix)')[1]
  arp_line = next(line for line in mined.splitlines() if line.startswith('| arp@10 |'))
  assert arp_line.endswith(f'| {209.8877 / 338.5304 - 1:+.1%} |')
  for suffix in ('_composition.png', '_group_hr.png', '_pareto.png'):
    assert os.path.getsize(out + suffix) > 1000


def test_direction_table_pairs_seeds_and_counts_wanted_signs():
  def run(seed, hr, tail, mgu):
    return {'seed': seed, 'hr@10': hr, 'hr@10/tail': tail, 'ndcg@10': hr, 'ndcg@10/tail': tail,
            'mgu@10': mgu, 'arp@10': 100.0}
  rows = {'LC-Rec': [run(0, 0.10, 0.010, 0.40), run(1, 0.10, 0.020, 0.40), run(3, 0.1, 0., .4)],
          # listed in another order: pairing must go by seed, not position
          'Ghost': [run(1, 0.08, 0.010, 0.30), run(0, 0.095, 0.020, 0.30), run(2, 1., 1., 1.),
                    run(3, 0.1, 0.001, 0.4)]}
  paper = {'LC-Rec': {'hr@10': 0.1046, 'hr@10/tail': 0.0044, 'ndcg@10': 0.0804,
                      'ndcg@10/tail': 0.0027, 'mgu@10': 0.3380, 'arp@10': 338.53},
           'Ghost': {'hr@10': 0.1017, 'hr@10/tail': 0.0173, 'ndcg@10': 0.0805,
                     'ndcg@10/tail': 0.0097, 'mgu@10': 0.0958, 'arp@10': 209.89}}
  lines = {line.split(' | ')[0][2:]: line.split(' | ')
           for line in tables.direction_table(rows, 'Ghost', 'LC-Rec', paper).splitlines()}
  # hr: seed 0 −5% (within 10%), seed 1 −20%, seed 3 0%; mean 0.0917 vs 0.1 = −8.3%
  assert lines['hr@10'][2:6] == ['0.1000', '0.0917', '-8.3%', '2/3']
  # tail: seed 0 +100%, seed 1 −50%, seed 3 up from zero (seed 2 has no baseline: left out)
  assert lines['hr@10/tail'][5] == '2/3'
  assert lines['mgu@10'][5] == '2/3' and lines['arp@10'][5] == '0/3'
  assert lines['hr@10/tail'][6] == f'{0.0173 / 0.0044 - 1:+.1%} |'
  # a mean rising from zero is said so, not printed as an infinite change
  rows = {'TIGER': [run(0, 0.1, 0.0, 0.4)], 'TIGER + X': [run(0, 0.1, 0.002, 0.4)]}
  tail = tables.direction_table(rows, 'TIGER + X', 'TIGER').splitlines()[3].split(' | ')
  assert tail[4:6] == ['up from 0', '1/1']


def test_timing_table_leaves_validation_pauses_out(tmp_path):
  workdir = tmp_path / 'LC-Rec' / 'seed0'
  os.makedirs(workdir)
  with open(workdir / 'results.json', 'w') as f:
    json.dump({'name': 'LC-Rec', 'seed': 0, 'splits': {'test': {}}}, f)
  # 10 steps per epoch, 0.5 s per step, a 30 s validation between steps 10 and 20.
  events = [{'event': 'train', 'step': 10, 'time': 5.0, 'epoch': 1.0},
            {'event': 'valid', 'step': 10, 'time': 35.0, 'eval_seconds': 30.0},
            {'event': 'train', 'step': 20, 'time': 40.0, 'epoch': 2.0},
            {'event': 'train', 'step': 30, 'time': 45.0, 'epoch': 3.0},
            {'event': 'train', 'step': 40, 'time': 50.0, 'epoch': 4.0}]
  with open(workdir / 'metrics.jsonl', 'w') as f:
    f.write('\n'.join(json.dumps(e) for e in events))
  assert '| LC-Rec | 1 | 5 | 30 |' in tables.timing_table(str(tmp_path))


@pytest.mark.parametrize('figure', ['composition', 'group_hit_rates', 'pareto'])
def test_figures_show_every_row_apart_with_seed_spread(figure, monkeypatch):
  """The 20 rows of the Ghost table, 3 seeds each: distinct colours, no two drawn labels
  overlapping, error bars, and the dataset in the title."""
  names = ['Pop', 'SASRec', 'LC-Rec', 'LC-Rec (per prefix)', 'LC-Rec (prompt)', 'TIGER',
           'LETTER (lcrec)', 'IFairLRS-RW', 'IFairLRS-RR', 'Augmentation', 'Substitution',
           'Ghost', 'Ghost (per prefix)', 'Ghost w/o AUO', 'Ghost w/o SKT', 'RQK-4', 'RQK-6',
           'RQK-4-6', 'LC-Rec (CF SIDs)', 'Ghost (CF SIDs)']
  rng = np.random.default_rng(0)
  rows = {}
  for name in names:  # nearby means on purpose: labels must still not collide
    rows[name] = [{'ndcg@10': 0.05 + 0.001 * rng.random(), 'ndcg@10/tail': 0.01 * rng.random(),
                   'mgu@10': rng.random(), 'head_slots@10': 900.0, 'tail_slots@10': 43.0 + s,
                   **{f'hr@10/group{g}': rng.random() for g in range(5)}} for s in range(3)]
  figures = []
  monkeypatch.setattr(plots, '_save', lambda fig, path: figures.append(fig) or path)
  args = (rows, 10, 5, 'x.png') if figure == 'group_hit_rates' else (rows, 10, 'x.png')
  getattr(plots, figure)(*args, where='MovieLens-100k, test split')
  fig = figures[0]
  fig.tight_layout()
  fig.canvas.draw()
  renderer = fig.canvas.get_renderer()
  texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text()]
  boxes = [t.get_window_extent(renderer) for t in texts]
  for i in range(len(boxes)):
    for j in range(i + 1, len(boxes)):
      assert not boxes[i].overlaps(boxes[j]), (texts[i].get_text(), texts[j].get_text())
  assert 'MovieLens-100k, test split' in fig.axes[0].get_title()
  ax = fig.axes[0]
  colours = {tuple(np.round(c.get_facecolor()[0], 3)) for c in ax.collections
             if len(c.get_facecolor())} | {tuple(np.round(p.get_facecolor(), 3))
                                           for p in ax.patches}
  assert len(colours) >= (2 if figure == 'composition' else len(names))
  assert any(isinstance(c, matplotlib.collections.LineCollection) for c in ax.collections)
  matplotlib.pyplot.close(fig)


def test_report_orders_rows_as_the_papers_marks_directions_and_the_best(tmp_path):
  for path, name, method, hr, mgu, slots in [('a', 'Ghost', 'ghost', 0.10, 0.20, 95.0),
                                             ('b', 'Pop', 'pop', 0.05, 0.40, 3.0),
                                             ('c', 'LC-Rec', 'lcrec', 0.12, 0.30, 40.0)]:
    os.makedirs(tmp_path / path)
    (tmp_path / path / 'results.json').write_text(json.dumps(
        {'name': name, 'method': method, 'seed': 0, 'dataset': 'ml-100k',
         'protocol': 'full ranking', 'splits': {'test': {
             'hr@10': hr, 'hr@10/tail': hr / 2, 'ndcg@10': hr, 'ndcg@10/tail': hr / 2,
             'mgu@10': mgu, 'arp@10': 100 * mgu, 'tail_slots@10': slots}}}))
  text = tables.report(str(tmp_path))
  assert text.startswith('test split; ml-100k (full ranking).')
  rows = [line.split(' | ')[0][2:] for line in text.splitlines() if line.startswith('| ')][1:]
  assert rows == ['Pop', 'LC-Rec', 'Ghost']  # baselines first, whatever the folder order
  header = text.splitlines()[2]
  assert 'HR@10 all ↑' in header and 'MGU@10 ↓' in header and 'ARP@10 ↓' in header
  lines = {line.split(' | ')[0][2:]: line for line in text.splitlines()[4:]}
  assert '**0.1200**' in lines['LC-Rec'] and '**0.2000**' in lines['Ghost']  # HR max, MGU min
  assert '**20.0**' in lines['Ghost'] and '0.0500' in lines['Pop'] and '**' not in lines['Pop']
  assert tables.run_table({'tail_slots@10': 95.0, 'arp@10': 148.7, 'hr@10': 0.1},
                          (10,)).splitlines()[2:] == ['| hr | 0.1000 |', '| arp | 148.7 |',
                                                      '| tail_slots | 95 |']


def test_sensitivity_sweep_shares_the_default_point_and_draws_its_figures(tmp_path):
  rows = ghost_sensitivity.get_sweep('cpu', str(tmp_path))
  assert len(rows) == 9 + 6 + 4 - 2  # the default point once, not three times
  default = [r for r in rows if r['name'] == 'Ghost Lh=3 Lt=2 alpha=0.1 Kb=5']
  assert len(default) == 1 and default[0]['overrides']['train.example_kind'] == 'prefix'
  rng = np.random.default_rng(0)
  for row in rows[:5] + rows[-2:]:  # part of the grid, two seeds each
    for seed in range(2):
      _fake_run(tmp_path / 'runs', row['name'], seed, rng)
  reference = [_fake_run(tmp_path / 'table', 'Ghost (per prefix)', seed, rng)
               for seed in range(3)]
  text = ghost_sensitivity.report(str(tmp_path / 'runs'),
                                  str(tmp_path / 'out' / 'ghost_sensitivity'),
                                  reference_root=str(tmp_path / 'table'))
  assert '| Ghost Lh=3 Lt=1 alpha=0.1 Kb=5 | 2 |' in text
  tail = [r['hr@10/tail'] for r in reference]
  assert (f'tail HR@10 {np.mean(tail):.4f} ± {np.std(tail, ddof=1):.4f}' in text
          and '3 seeds' in text)
  for name in ('ghost_length_heatmap.png', 'ghost_alpha.png', 'ghost_k_b.png'):
    assert os.path.getsize(tmp_path / 'out' / name) > 1000
  without = ghost_sensitivity.report(str(tmp_path / 'runs'), str(tmp_path / 'bare' / 'report'),
                                     reference_root='')
  assert 'Seed noise' not in without and os.path.exists(tmp_path / 'bare' / 'ghost_alpha.png')


def test_scaling_sweep_sizes_and_figure(tmp_path):
  cpu = ghost_scaling.get_sweep('cpu', str(tmp_path))
  assert [r['name'] for r in cpu][:2] == ['LC-Rec (small)', 'Ghost (small)'] and len(cpu) == 6
  large = next(r for r in cpu if r['name'] == 'Ghost (large)')
  assert large['overrides'] == {'train.example_kind': 'prefix', 'model.hidden_size': 256,
                                'model.intermediate_size': 1024, 'model.num_layers': 4,
                                'model.num_heads': 8, 'model.num_kv_heads': 4}
  paper = ghost_scaling.get_sweep('paper', str(tmp_path))
  assert {r['overrides']['model.checkpoint'] for r in paper} == {
      f'checkpoints/Qwen3-{s}' for s in ('0.6B', '1.7B', '4B', '8B')}
  rng = np.random.default_rng(0)
  for row, params in zip(cpu, (1e5, 1e5, 4e5, 4e5, 3e6, 3e6)):
    for seed in range(2):
      _fake_run(tmp_path / 'runs', row['name'], seed, rng)
      path = tmp_path / 'runs' / row['name'] / f'seed{seed}' / 'results.json'
      result = json.loads(path.read_text())
      result['num_params'] = params
      result['splits']['test']['hr@10/head'] = rng.random()
      path.write_text(json.dumps(result))
  text = ghost_scaling.report(str(tmp_path / 'runs'), str(tmp_path / 'out' / 'ghost_scaling'))
  assert '| Ghost (large) | 2 |' in text
  assert text.index('| LC-Rec (small) |') < text.index('| LC-Rec (large) |')  # by size
  tests = [json.loads((tmp_path / 'runs' / 'Ghost (large)' / f'seed{s}' / 'results.json')
                      .read_text())['splits']['test'] for s in range(2)]
  head, tail = (np.mean([t[key] for t in tests]) for key in ('hr@10/head', 'hr@10/tail'))
  assert (f'| Ghost (large) | 3,000,000 | {head:.4f} | {tail:.4f} | {head - tail:.4f} | '
          f'{head / tail:.1f}x |') in text
  assert os.path.getsize(tmp_path / 'out' / 'ghost_scaling.png') > 1000


def test_report_flag_writes_the_study_from_the_kept_records(tmp_path):
  """One command per study: with every run kept, the sweep runs nothing and writes the
  scaling report and figure from the kept records."""
  rng = np.random.default_rng(0)
  for row in ghost_scaling.get_sweep('cpu', str(tmp_path)):
    _fake_run(tmp_path / 'kept', sweep.run_dir_name(row['name']), 0, rng)
    path = tmp_path / 'kept' / sweep.run_dir_name(row['name']) / 'seed0' / 'results.json'
    result = json.loads(path.read_text())
    result.update(name=row['name'], num_params=1e5)
    result['splits']['test']['hr@10/head'] = rng.random()
    path.write_text(json.dumps(result))
  out = tmp_path / 'out' / 'ghost_scaling'
  done = subprocess.run(
      [sys.executable, '-m', 'launch.sweep', '--sweep=experiments/ghost_scaling.py',
       f'--root={tmp_path / "root"}', f'--keep={tmp_path / "kept"}', '--seeds=0',
       f'--report={out}'], cwd=REPO, capture_output=True, text=True, check=True)
  assert done.stdout.count('skipped') == 6 and not (tmp_path / 'root').exists()
  assert '| Ghost (large) | 1 |' in (tmp_path / 'out' / 'ghost_scaling.md').read_text()
  assert os.path.getsize(tmp_path / 'out' / 'ghost_scaling.png') > 1000


def test_report_step_prepares_from_the_runs_then_reads_the_records(tmp_path):
  (tmp_path / 'study.py').write_text(
      'import os\n'
      'def get_sweep(arg, root):\n  return []\n'
      'def prepare_report(root, keep):\n'
      '  open(os.path.join(keep, "prepared"), "w").write(root)\n'
      'def report(records, out):\n  return ",".join(sorted(os.listdir(records)))\n')
  (tmp_path / 'kept').mkdir()
  study = sweep.load_module(str(tmp_path / 'study.py'))
  sweep.check_reports(study, 'study.py')
  text = sweep.write_report(study, 'RUNS', str(tmp_path / 'kept'), 'x')
  assert text == 'prepared' and (tmp_path / 'kept' / 'prepared').read_text() == 'RUNS'
  # A sweep file without report() is refused before any run, in one line.
  (tmp_path / 'bare.py').write_text('def get_sweep(arg, root):\n  return []\n')
  done = subprocess.run([sys.executable, '-m', 'launch.sweep', f'--sweep={tmp_path}/bare.py',
                         f'--root={tmp_path}/root', '--report=x'], cwd=REPO,
                        capture_output=True, text=True, check=False)
  assert done.returncode == 2 and done.stderr.startswith('launch.sweep: --report: ')
  assert len(done.stderr.strip().splitlines()) == 1 and 'defines no report' in done.stderr


@pytest.mark.parametrize('study', ['ghost_table', 'ghost_scaling', 'ghost_sensitivity'])
def test_paper_forms_dry_run_as_slurm_arrays(study, tmp_path):
  """Every study's `paper` form becomes SLURM job arrays: one task per (row, seed), each a
  command line of a `paper` config, the needed runs (SASRec for LETTER) in an earlier array."""
  rows = sweep.load_sweep(os.path.join(REPO, 'experiments', f'{study}.py'), 'paper',
                          str(tmp_path))
  runs = sweep.expand(rows, str(tmp_path), ['0', '1', '2'])
  line = sweep.submit_slurm(runs, str(tmp_path), '--partition=gpu --gres=gpu:1')
  arrays = sorted(tmp_path.glob('*.sbatch'))
  tasks = [t for a in arrays for t in (tmp_path / a.name.replace('.sbatch', '.runs.txt'))
           .read_text().splitlines()]
  assert len(tasks) == len(runs) == 3 * len(rows)
  assert all(':paper' in t and '--config.seed=' in t for t in tasks)
  assert all('#SBATCH --gres=gpu:1' in a.read_text() for a in arrays)
  assert line.count('sbatch --parsable') == len(arrays)


def test_a_killed_sweep_picks_its_unfinished_run_up_from_the_checkpoint(tmp_path):
  """What a long Instruments run relies on across working stretches: the sweep is killed
  (SIGTERM to its process group, as at the end of a session) mid-run, and launching it again
  resumes that run from its last checkpoint, to the end, without repeating logged steps."""
  rows = [{'name': 'SASRec', 'config': 'configs/sasrec_ins.py:smoke',
           'overrides': {'train.num_steps': 2000, 'train.checkpoint_every': 20,
                         'train.log_every': 20, 'train.eval_every': 2000}}]
  root, keep = tmp_path / 'root', tmp_path / 'kept'
  launch = [sys.executable, '-c', (
      'import sys; from launch import sweep\n'
      f'rows = {rows!r}\n'
      f'sys.exit(sweep.run_local(sweep.expand(rows, {str(root)!r}, ["0"], keep={str(keep)!r})))')]
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  first = subprocess.Popen(launch, cwd=REPO, env=env, start_new_session=True)
  workdir = root / 'SASRec' / 'seed0'
  log = workdir / 'log.txt'
  deadline = time.time() + 300
  while not (workdir / 'checkpoints' / 'state').is_dir() or not os.listdir(
      workdir / 'checkpoints' / 'state'):
    assert time.time() < deadline and first.poll() is None, 'no checkpoint was written'
    time.sleep(0.5)
  os.killpg(first.pid, signal.SIGTERM)
  first.wait(timeout=60)
  while 'SIGTERM: saved step' not in log.read_text():  # the orphaned run saves, then exits
    assert time.time() < deadline, log.read_text()[-2000:]
    time.sleep(0.5)
  assert not (workdir / 'results.json').exists()
  saved = int(log.read_text().split('SIGTERM: saved step ')[1].split(';')[0])
  assert 0 < saved < 2000

  again = subprocess.run(launch, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert again.returncode == 0, again.stdout[-2000:] + log.read_text()[-2000:]
  assert f'Resumed from step {saved}' in log.read_text()
  assert (keep / 'SASRec' / 'seed0' / 'results.json').exists()
  with open(workdir / 'metrics.jsonl') as f:
    steps = [json.loads(line)['step'] for line in f if '"train"' in line]
  assert steps == sorted(set(steps)) and steps[-1] == 2000


def test_instruments_sweep_has_the_per_example_rows_and_each_config_validates(tmp_path):
  from genrec_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  rows = sweep.load_sweep(os.path.join(REPO, 'experiments/ghost_table.py'), 'ins', str(tmp_path))
  per_example = [r for r in rows if r['name'].endswith('per prefix)')]
  assert {r['name'] for r in per_example} == {
      'LC-Rec (per prefix)', 'Ghost (per prefix)', 'Ghost w/o AUO (per prefix)',
      'LETTER SIDs (lcrec, per prefix)', 'Ghost (mined distractors, per prefix)'}
  mined = sweep.expand(rows, str(tmp_path), seeds=[0],
                       only=['Ghost (mined distractors, per prefix)'])
  lcrec_seed1 = os.path.join(str(tmp_path), 'LC-Rec_per_prefix', 'seed1')
  assert [spec['workdir'] for spec in mined] == [lcrec_seed1, mined[1]['workdir']]
  assert f'--config.ghost.distractors_run={lcrec_seed1}' in mined[1]['command']
  for row in rows:
    config = config_lib.load_config_file(os.path.join(REPO, row['config']))
    for key, value in row['overrides'].items():
      config.update_from_flattened_dict({key: value})
    config_lib.validate(config)
    assert config.data.name == 'instruments-lcrec', row['name']
    if row in per_example:
      assert config.train.example_kind == 'prefix' and config.train.early_stop_patience >= 1
      assert config.train.early_stop_metric == 'ndcg@10', row['name']
