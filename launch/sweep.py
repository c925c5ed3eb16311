r"""Run a sweep: every (row, seed) of a sweep definition as one genrec_jax run.

A sweep file defines get_sweep(arg, root) -> rows {'name', 'config'
('configs/x.py[:variant]'), 'overrides' ({'a.b': value}), optionally 'needs' ([(row name,
seed)]: runs whose workdir this row reads, e.g. SASRec seed 0's item embeddings)}; each row runs
once per seed in <root>/<name>/seed<k>, after the runs it needs. Runs that already have
results.json are skipped, and interrupted ones resume from their checkpoints, so a sweep can be
re-launched until it is complete (--status says where each run stands). With --keep=DIR (a
directory in the repository) each finished run's record (results.json, metrics.jsonl,
config.json; no checkpoints) is copied to DIR/<name>/seed<k>, and runs recorded there count as
done: seeds accumulate across machines and sessions, and reports can be rebuilt from DIR
alone. A kept run that a pending run needs is
run again into root (a record holds no embeddings or checkpoints). With --report=PREFIX the
sweep file's report(records, out) then writes its tables and figures from the kept records
(root's runs without --keep), after its optional prepare_report(root, keep): one command per
study, end to end.

  local   one run after the other on this machine (--jobs=N: N at a time, each on its own
          share of the CPUs):
            python -m launch.sweep --sweep=experiments/ghost_table.py --root=runs/ghost \
                --seeds=0,1,2 --keep=experiments/runs/ghost_ml100k \
                --report=experiments/ghost_table_ml100k

  slurm   writes <root>/sweep.sbatch, a job array with one task per run (multi-node tasks
          initialise jax.distributed from the SLURM environment; needed runs go in an earlier
          array, sweep0.sbatch, that the last one waits for), and prints the sbatch line:
            python -m launch.sweep --sweep=... --root=... --launcher=slurm --slurm_args='--gres=gpu:1'
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string('sweep', None, 'Python file with get_sweep(arg, root) -> list of rows.')
flags.DEFINE_string('sweep_arg', '', 'Argument passed to get_sweep.')
flags.DEFINE_string('root', None, 'Directory holding one workdir per run.')
flags.DEFINE_list('seeds', ['0'], 'Seeds to run each row with.')
flags.DEFINE_enum('launcher', 'local', ['local', 'slurm'], 'Where to run.')
flags.DEFINE_string('slurm_args', '', 'Extra #SBATCH arguments, e.g. "--gres=gpu:1 -t 4:00:00".')
flags.DEFINE_string('only', '', 'Comma-separated row names to run (default: all), with '
                    'the runs they need.')
flags.DEFINE_string('keep', '', 'Directory that keeps each finished run\'s record; runs '
                    'recorded there are skipped.')
flags.DEFINE_integer('jobs', 1, 'Local launcher: how many runs at a time, each pinned to its '
                     'own share of the CPUs (2 on a 2-core CPU: 1.53x the steps per second; '
                     'benchmarks/RESULTS.md).')
flags.DEFINE_string('report', '', "File prefix of the sweep's report, written after the runs "
                    "by its report(records, out) from --keep (or --root), e.g. "
                    "experiments/ghost_scaling.")
flags.DEFINE_bool('status', False, 'Print where each run stands (kept, finished, the step it '
                  'reached and its last checkpoint, not started) and run nothing.')
RECORD_FILES = ('config.json', 'metrics.jsonl', 'results.json')  # results.json, the marker, last


class SweepError(ValueError):
  """A sweep asked for something it cannot do (printed as one line, exit code 2)."""


def load_module(path: str):
  spec = importlib.util.spec_from_file_location('sweep_definition', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_sweep(path: str, arg: str, root: str) -> list[dict]:
  return load_module(path).get_sweep(arg, root)


def check_reports(module, path: str) -> None:
  """Fails before any run if --report asks a sweep file without report() for one."""
  if not hasattr(module, 'report'):
    raise SweepError(f'--report: {path} defines no report(records, out); leave --report out '
                     'and write its tables with its own command.')


def write_report(module, root: str, keep: str, out: str) -> str:
  """The sweep file's report(records, out) over the kept records (root's runs without a
  keep directory), after its optional prepare_report(root, keep) (a step that needs the
  runs' checkpoints, e.g. scoring them under a second protocol)."""
  if hasattr(module, 'prepare_report'):
    module.prepare_report(root, keep)
  return module.report(keep or root, out)


def expand(rows: list[dict], root: str, seeds, keep: str = '', only=()) -> list[dict]:
  """One entry per (row, seed) of the rows named in `only` (default all): name, workdir, the
  command line, where its record is kept ('' if nowhere) and the workdirs of the runs it needs
  (a row's 'needs': [(row name, seed)], e.g. LETTER reads SASRec seed 0's item embeddings).
  Needed runs come before the runs that need them, whatever `only` and `seeds` say."""
  by_name = {row['name']: row for row in rows}
  unknown = set(only) - set(by_name)
  if unknown:
    raise SweepError(f'--only names rows the sweep lacks: {sorted(unknown)}; its rows: '
                     f'{list(by_name)}')
  runs = {}

  def add(row, seed):
    run = os.path.join(run_dir_name(row['name']), f'seed{seed}')
    workdir = os.path.join(root, run)
    if workdir in runs:
      return runs[workdir]
    needs = []
    for name, needed_seed in row.get('needs', ()):
      if name not in by_name:
        raise SweepError(f'row {row["name"]!r} needs row {name!r}, which the sweep lacks')
      needs.append(add(by_name[name], needed_seed)['workdir'])
    args = [f'--config={row["config"]}', f'--workdir={workdir}', f'--config.seed={seed}',
            f'--config.name={row["name"]}']
    args += [f'--config.{k}={_flag_value(v)}' for k, v in row.get('overrides', {}).items()]
    runs[workdir] = {'name': row['name'], 'seed': int(seed), 'workdir': workdir,
                     'kept': os.path.join(keep, run) if keep else '', 'needs': needs,
                     'command': [sys.executable, '-m', 'genrec_jax.main', *args]}
    return runs[workdir]

  for row in rows:
    if not only or row['name'] in only:
      for seed in seeds:
        add(row, seed)
  return list(runs.values())


def row_names(text: str) -> list[str]:
  """--only's comma-separated row names; a comma inside parentheses belongs to its name
  ('Ghost,SimGR (SKT SIDs, AUO)' -> ['Ghost', 'SimGR (SKT SIDs, AUO)'])."""
  names, depth, current = [], 0, ''
  for char in text:
    depth += {'(': 1, ')': -1}.get(char, 0)
    if char == ',' and depth == 0:
      names.append(current.strip())
      current = ''
    else:
      current += char
  return [name for name in names + [current.strip()] if name]


def to_run(runs: list[dict]) -> list[dict]:
  """The runs still to do: those not kept, and kept ones whose workdir another run needs
  (a kept record has no checkpoints or embeddings to read)."""
  pending = [spec for spec in runs if not is_kept(spec)]
  needed = {workdir for spec in pending for workdir in spec['needs']}
  return [spec for spec in runs if spec in pending or (
      spec['workdir'] in needed and not _finished(spec['workdir']))]


def _finished(folder: str) -> bool:
  """Whether a workdir, or a kept record's folder, holds a finished run: its results.json,
  written (and copied) last."""
  return os.path.exists(os.path.join(folder, RECORD_FILES[-1]))


def run_dir_name(name: str) -> str:
  """'LETTER (lcrec)' -> 'LETTER_lcrec': a row name as a directory name."""
  return re.sub(r'[^A-Za-z0-9.+-]+', '_', name).strip('_')


def run_label(workdir: str) -> str:
  """'<row dir>/<seed dir>' of a workdir laid out as <root>/<row dir>/seed<k> (the label
  reports and kept ablation records use)."""
  return '/'.join(os.path.normpath(workdir).split(os.sep)[-2:])


def _flag_value(value) -> str:
  return json.dumps(value) if isinstance(value, (list, tuple)) else str(value)


# glibc keeps freed memory mapped with these, so XLA's per-step scratch buffers stop
# page-faulting: 1.3-1.9x faster CPU train steps here (benchmarks/RESULTS.md, Training).
MALLOC_ENV = {'MALLOC_ARENA_MAX': '1', 'MALLOC_MMAP_MAX_': '0',
              'MALLOC_TRIM_THRESHOLD_': '100000000000'}


def run_local(runs: list[dict], jobs: int = 1) -> int:
  """Runs the pending runs, `jobs` at a time, each pinned to its own share of this process's
  CPUs (with jobs > 1), a run only after the runs it needs have finished; returns how many
  failed or could not run."""
  env = {**MALLOC_ENV, **os.environ}
  pending = to_run(runs)
  queue = []
  for i, spec in enumerate(runs):
    head = f'[{i + 1}/{len(runs)}] {spec["name"]} seed {spec["seed"]}'
    if spec not in pending:
      print(f'{head}: kept in {spec["kept"]}, skipped')
    elif _finished(spec['workdir']):
      print(f'{head}: done, skipped')
      keep_record(spec)
    else:
      queue.append((head, spec))
  shares = cpu_shares(jobs)
  running = {}  # share index -> (head, spec, process, log file, start time)
  failed = 0
  while queue or running:
    for head, spec in list(queue):
      free = [k for k in range(jobs) if k not in running]
      if not free:
        break
      waiting = [w for w in spec['needs'] if not _finished(w)]
      coming = {s['workdir'] for _, s in queue} | {s['workdir'] for _, s, *_ in running.values()}
      if any(w not in coming for w in waiting):
        print(f'{head}: not run, it needs {", ".join(waiting)}, which did not finish',
              flush=True)
        failed += 1
        queue.remove((head, spec))
      elif not waiting:
        queue.remove((head, spec))
        running[free[0]] = _start(head, spec, env, shares[free[0]])
    if not running:
      continue
    share, (head, spec, process, log, start) = _wait_any(running)
    del running[share]
    log.close()
    code = process.returncode
    print(f'    {head}: exit {code} after {time.time() - start:.0f} s '
          f'(log: {spec["workdir"]}/log.txt)', flush=True)
    failed += code != 0
    if code == 0:
      keep_record(spec)
  return failed


def cpu_shares(jobs: int) -> list:
  """The CPU set each of `jobs` concurrent runs is pinned to: this process's CPUs split into
  contiguous shares (None, no pinning, for one job or where affinity cannot be set).
  Separate shares keep two XLA thread pools from fighting over the same cores."""
  if jobs < 1:
    raise SweepError(f'--jobs={jobs}: run at least one job at a time.')
  if jobs == 1 or not hasattr(os, 'sched_getaffinity'):
    return [None] * jobs
  cpus = sorted(os.sched_getaffinity(0))
  if jobs > len(cpus):
    raise SweepError(f'--jobs={jobs}: this process may use {len(cpus)} CPUs; run at most '
                     f'{len(cpus)} jobs at a time.')
  size, extra = divmod(len(cpus), jobs)
  bounds = [k * size + min(k, extra) for k in range(jobs + 1)]
  return [set(cpus[bounds[k]:bounds[k + 1]]) for k in range(jobs)]


def _start(head: str, spec: dict, env: dict, cpus):
  print(f'{head}: {shlex.join(spec["command"])}' + (f' (CPUs {sorted(cpus)})' if cpus else ''),
        flush=True)
  os.makedirs(spec['workdir'], exist_ok=True)
  log = open(os.path.join(spec['workdir'], 'log.txt'), 'a')  # pylint: disable=consider-using-with
  process = subprocess.Popen(  # pylint: disable=consider-using-with
      pinned(spec['command'], cpus), stdout=log, stderr=subprocess.STDOUT, env=env)
  return head, spec, process, log, time.time()


def pinned(command: list[str], cpus) -> list[str]:
  """`command` run on the CPU set `cpus` (None: as it is). The child sets its own affinity and
  then execs, so no pre-exec hook runs in a forked copy of a threaded parent."""
  if not cpus:
    return command
  return [sys.executable, '-c', 'import os, sys; os.sched_setaffinity(0, map(int, sys.argv[1]'
          '.split(","))); os.execvp(sys.argv[2], sys.argv[2:])', ','.join(map(str, sorted(cpus))),
          *command]


def _wait_any(running: dict):
  """(share, entry) of the first running run to exit."""
  while True:
    for share, entry in running.items():
      if entry[2].poll() is not None:
        return share, entry
    time.sleep(0.5)


def status(runs: list[dict]) -> str:
  """One line per run: kept, finished, the step it reached and its last checkpoint (where a
  relaunch resumes), or not started."""
  return '\n'.join(f'{spec["name"]} seed {spec["seed"]}: {run_state(spec)}' for spec in runs)


def run_state(spec: dict) -> str:
  workdir = spec['workdir']
  if is_kept(spec):
    return f'kept in {spec["kept"]}'
  if _finished(workdir):
    return 'finished (the next launch keeps its record)' if spec['kept'] else 'finished'
  if not os.path.exists(os.path.join(workdir, 'config.json')):
    return 'not started'
  total = None
  if os.path.exists(os.path.join(workdir, 'log.txt')):
    with open(os.path.join(workdir, 'log.txt'), errors='replace') as f:
      found = re.findall(r'^Training .*?: (\d+) steps', f.read(), re.M)
    total = found[-1] if found else None
  step = 0
  if os.path.exists(os.path.join(workdir, 'metrics.jsonl')):
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      step = max((json.loads(line)['step'] for line in f if '"train"' in line), default=0)
  state_dir = os.path.join(workdir, 'checkpoints', 'state')
  saved = [int(d) for d in os.listdir(state_dir) if d.isdigit()] if os.path.isdir(state_dir) else []
  return (f'step {step} of {total or "?"} logged; ' +
          (f'a relaunch resumes from step {max(saved)}' if saved else 'no checkpoint yet'))


def is_kept(spec: dict) -> bool:
  """Whether the run's record is already kept (its results.json, copied last, is there)."""
  return bool(spec['kept']) and _finished(spec['kept'])


def keep_record(spec: dict) -> None:
  """Copies a finished run's record to spec['kept'] (if set)."""
  if spec['kept']:
    copy_record(spec['workdir'], spec['kept'])


def record_files(workdir: str) -> list[str]:
  """A finished run's record, relative to its workdir: RECORD_FILES, with each later training
  phase's (methods.Phase, in <workdir>/<phase>/: a folder with checkpoints and metrics.jsonl)
  metrics.jsonl and JSON files, e.g. GENPLUGIN's finetune/retrieval.json, before
  results.json."""
  phases = sorted(name for name in os.listdir(workdir)
                  if os.path.isdir(os.path.join(workdir, name, 'checkpoints'))
                  and os.path.isfile(os.path.join(workdir, name, 'metrics.jsonl')))
  phase_files = [os.path.join(phase, name) for phase in phases
                 for name in sorted(os.listdir(os.path.join(workdir, phase)))
                 if name.endswith(('.json', '.jsonl'))]
  return [*RECORD_FILES[:-1], *phase_files, RECORD_FILES[-1]]


def copy_record(workdir: str, kept: str) -> None:
  """Copies record_files(workdir) to the folder kept, results.json last. A record already
  kept there stays: the run was re-run only because another run reads its workdir, and the
  re-run is not the run the tables were made from (float sums, or the code, may differ)."""
  if _finished(kept):
    print(f'    {kept} already holds this run\'s record: left as it is (the re-run is in '
          f'{workdir})', flush=True)
    return
  for name in record_files(workdir):
    source = os.path.join(workdir, name)
    if os.path.exists(source):
      os.makedirs(os.path.dirname(os.path.join(kept, name)), exist_ok=True)
      shutil.copyfile(source, os.path.join(kept, name))


def check_keep_is_committable(keep: str) -> None:
  """Fails if git would ignore the records --keep writes (they would never be committed)."""
  keep = os.path.abspath(keep)
  existing = keep
  while not os.path.isdir(existing):
    existing = os.path.dirname(existing)
  probe = os.path.join(keep, 'row', 'seed0', 'results.json')
  try:
    result = subprocess.run(['git', '-C', existing, 'check-ignore', '-v', probe],
                            capture_output=True, text=True, check=False)
  except FileNotFoundError:  # no git: nothing to check
    return
  if result.returncode == 0:  # 1: not ignored; 128: not in a repository
    raise SweepError(f'--keep={keep}: git ignores the records written there (rule '
                     f'{result.stdout.split(chr(9))[0]}); choose another directory or change '
                     'that .gitignore rule.')


def submit_slurm(runs: list[dict], root: str, extra: str) -> str:
  """Writes one job array per stage (runs needed by others go in an earlier stage) and returns
  the shell line that submits them, each stage after the previous one succeeded."""
  stages, placed = [], set()
  while len(placed) < len(runs):
    stage = [s for s in runs if s['workdir'] not in placed and
             all(w in placed or w not in {r['workdir'] for r in runs} for w in s['needs'])]
    placed.update(s['workdir'] for s in stage)
    stages.append(stage)
  scripts = [write_slurm(stage, root, extra, f'sweep{k}' if k < len(stages) - 1 else 'sweep')
             for k, stage in enumerate(stages)]
  line = f'job=$(sbatch --parsable {scripts[0]})'
  for script in scripts[1:]:
    line += f' && job=$(sbatch --parsable --dependency=afterok:$job {script})'
  return line + ' && echo submitted $job'


def write_slurm(runs: list[dict], root: str, extra: str, stem: str = 'sweep') -> str:
  """Writes <root>/<stem>.sbatch, a job array running <root>/<stem>.runs.txt's lines."""
  os.makedirs(root, exist_ok=True)
  table = os.path.join(root, f'{stem}.runs.txt')
  with open(table, 'w') as f:
    for spec in runs:
      line = shlex.join(spec['command'])
      if spec['kept']:  # the local launcher's keep_record, in the job
        line += ' && ' + shlex.join([
            spec['command'][0], '-c', 'import sys; from launch import sweep; '
            'sweep.copy_record(*sys.argv[1:])', spec['workdir'], spec['kept']])
      f.write(line + '\n')
  script = os.path.join(root, f'{stem}.sbatch')
  lines = ['#!/bin/bash', f'#SBATCH --array=1-{len(runs)}', '#SBATCH --job-name=genrec_jax',
           f'#SBATCH --output={root}/slurm-%A_%a.out']
  lines += [f'#SBATCH {a}' for a in shlex.split(extra)]
  lines += [f'cd {shlex.quote(os.getcwd())}',
            f'CMD=$(sed -n "${{SLURM_ARRAY_TASK_ID}}p" {shlex.quote(table)})',
            'srun bash -c "$CMD"']
  with open(script, 'w') as f:
    f.write('\n'.join(lines) + '\n')
  return script


def main(argv):
  del argv
  try:
    run_sweep()
  except SweepError as e:
    print(f'launch.sweep: {e}', file=sys.stderr)
    sys.exit(2)


def run_sweep():
  module = load_module(FLAGS.sweep)
  if FLAGS.report:
    check_reports(module, FLAGS.sweep)
  rows = module.get_sweep(FLAGS.sweep_arg, FLAGS.root)
  if FLAGS.keep:
    check_keep_is_committable(FLAGS.keep)
  only = row_names(FLAGS.only)
  runs = expand(rows, FLAGS.root, FLAGS.seeds, FLAGS.keep, only)
  if FLAGS.status:
    print(status(runs))
    return
  if FLAGS.launcher == 'slurm':
    print(submit_slurm(to_run(runs), FLAGS.root, FLAGS.slurm_args))
    if FLAGS.report:
      print('--report: once the jobs have finished, run this command again with '
            '--launcher=local: it skips the finished runs and writes the report.')
    return
  failed = run_local(runs, FLAGS.jobs)
  if FLAGS.report:
    print(write_report(module, FLAGS.root, FLAGS.keep, FLAGS.report))
    if failed:
      print(f'{failed} run(s) failed or could not run: the report holds the others.')
  sys.exit(1 if failed else 0)


if __name__ == '__main__':
  flags.mark_flags_as_required(['sweep', 'root'])
  app.run(main)
