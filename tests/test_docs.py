"""The guides in docs/ run as written: their code blocks are extracted and executed."""

import os
import re
import subprocess
import sys

import pytest

from genrec_jax import config as config_lib
from genrec_jax import run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _blocks(page: str, language: str) -> list[str]:
  with open(os.path.join(REPO, 'docs', page)) as f:
    return re.findall(rf'```{language}\n(.*?)```', f.read(), re.S)


def _env(tmp_path):
  return dict(os.environ, JAX_PLATFORMS='cpu', GENREC_TFDS_DIR=str(tmp_path / 'tfds'),
              PYTHONPATH=REPO)


def test_own_dataset_guide(tmp_path, monkeypatch):
  data, config_file = _blocks('own_dataset.md', 'python')
  command, = _blocks('own_dataset.md', 'bash')
  monkeypatch.chdir(tmp_path)
  monkeypatch.setenv('GENREC_TFDS_DIR', str(tmp_path / 'tfds'))
  exec(data, {})  # pylint: disable=exec-used
  (tmp_path / 'my_shop.py').write_text(config_file)
  spec = re.search(r'--config=(\S+)', command).group(1)
  workdir = re.search(r'--workdir=(\S+)', command).group(1)
  config = config_lib.load_config_file(spec)
  results = run.train_and_evaluate(config, workdir)
  statistics = results['statistics']
  assert statistics['users'] > 150 and statistics['items'] > 40  # the k-core kept most
  assert 0 <= results['splits']['test']['hr@10'] <= 1


def test_new_method_guide(tmp_path):
  module, script = _blocks('new_method.md', 'python')
  (tmp_path / 'my_methods').mkdir()
  (tmp_path / 'my_methods' / 'lcrec_focal.py').write_text(module)
  (tmp_path / 'run_focal.py').write_text(script)
  result = subprocess.run([sys.executable, 'run_focal.py'], cwd=tmp_path, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 0 <= float(result.stdout.strip().splitlines()[-1]) <= 1
  with open(tmp_path / 'runs' / 'lcrec_focal' / 'metrics.jsonl') as f:
    assert '"focal"' in f.read()


def test_sweep_guide(tmp_path):
  grid, = _blocks('sweep.md', 'python')
  local, slurm = _blocks('sweep.md', 'bash')
  (tmp_path / 'my_grid.py').write_text(grid)
  namespace = {}
  exec(grid, namespace)  # pylint: disable=exec-used
  rows = namespace['get_sweep']('', 'runs/grid')
  assert len(rows) == 6 and len({r['name'] for r in rows}) == 6
  sweep_line = local.splitlines()[0]
  # The local run, cut to one smoke-sized row and seed, then its report.
  args = sweep_line.split()[3:]
  args = [a.replace('my_grid.py', str(tmp_path / 'my_grid.py')).replace(
      'runs/grid', str(tmp_path / 'runs/grid')) for a in args if not a.startswith('--seeds')]
  args += ['--seeds=0', '--sweep_arg=smoke', '--only=SASRec lr=0.001 dropout=0.2']
  result = subprocess.run([sys.executable, '-m', 'launch.sweep', *args], cwd=REPO,
                          env=_env(tmp_path), capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
  assert (tmp_path / 'runs/grid/SASRec_lr_0.001_dropout_0.2/seed0/results.json').exists()
  # The SLURM form writes the job array of all 18 runs and prints the submit line.
  args = [a.replace('my_grid.py', str(tmp_path / 'my_grid.py')).replace(
      'runs/grid', str(tmp_path / 'slurm')) for a in slurm.split()[3:]]
  result = subprocess.run([sys.executable, '-m', 'launch.sweep', *args], cwd=REPO,
                          env=_env(tmp_path), capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'sbatch' in result.stdout
  assert '#SBATCH --array=1-18' in (tmp_path / 'slurm' / 'sweep.sbatch').read_text()
