"""The training loop: resume after SIGTERM, sharded = single device, multi-process, NaN stop."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genrec_jax import config as config_lib
from genrec_jax import methods
from genrec_jax import run
from genrec_jax.data import dataset as dataset_lib
from genrec_jax.data import synthetic
from genrec_jax.train import loop

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A tiny SASRec run on synthetic data, configured from the command line of a subprocess.
RUN_SCRIPT = textwrap.dedent('''
    import sys
    from genrec_jax import config as config_lib
    from genrec_jax import run
    workdir, num_steps = sys.argv[1], int(sys.argv[2])
    config = config_lib.base_config('sasrec', 'synthetic')
    config.data.synthetic.update(num_users=300, num_items=120)
    config.data.kcore = 2
    config.model.update(hidden=16, num_layers=1)
    config.train.update(batch_size=32, num_steps=num_steps, log_every=5, eval_every=num_steps,
                        checkpoint_every=10, warmup_steps=5)
    config.eval.splits = ('test',)
    run.train_and_evaluate(config, workdir)
''')


def _run(workdir, num_steps, **popen):
  return subprocess.Popen([sys.executable, '-c', RUN_SCRIPT, str(workdir), str(num_steps)],
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          **popen)


def _best_params(workdir):
  return run.load_run(str(workdir)).params


def _last_logged_step(workdir):
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return 0
  with open(path) as f:
    steps = [json.loads(line)['step'] for line in f if '"train"' in line]
  return max(steps, default=0)


def test_resumed_run_ends_with_the_same_params_as_an_uninterrupted_one(tmp_path):
  num_steps = 150
  whole = _run(tmp_path / 'whole', num_steps)
  killed = _run(tmp_path / 'killed', num_steps)
  deadline = time.time() + 240
  while _last_logged_step(tmp_path / 'killed') < 40 and time.time() < deadline:
    time.sleep(0.2)
  killed.send_signal(signal.SIGTERM)
  _, err = killed.communicate(timeout=240)
  assert killed.returncode == 143, err[-2000:]
  stopped_at = _last_logged_step(tmp_path / 'killed')
  assert 40 <= stopped_at < num_steps
  resumed = _run(tmp_path / 'killed', num_steps)
  out, err = resumed.communicate(timeout=240)
  assert resumed.returncode == 0, err[-2000:]
  assert 'Resumed from step' in out
  out, err = whole.communicate(timeout=240)
  assert whole.returncode == 0, err[-2000:]
  a, b = _best_params(tmp_path / 'whole'), _best_params(tmp_path / 'killed')
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


SHARDED_SCRIPT = textwrap.dedent('''
    import os
    os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=8'
    import json, sys
    import jax, numpy as np
    from genrec_jax import config as config_lib, methods
    from genrec_jax.data import dataset as dataset_lib, synthetic
    from genrec_jax.train import loop
    results = {}
    for name, mesh in (('single', dict(data=1, fsdp=1, tensor=1)),
                       ('sharded', dict(data=2, fsdp=2, tensor=2))):
      config = config_lib.base_config('sasrec', 'synthetic')
      config.model.update(hidden=16, num_layers=1, num_heads=2, dropout=0.0)
      config.train.update(batch_size=32, num_steps=12, log_every=4, warmup_steps=2)
      config.sharding.update(mesh)
      raw = synthetic.generate(num_users=200, num_items=64, seed=1)
      ds = dataset_lib.preprocess(raw, kcore=2)
      method = methods.get('sasrec').build(config, ds)
      devices = jax.devices()[:1] if name == 'single' else jax.devices()
      import unittest.mock as mock
      with mock.patch.object(jax, 'devices', lambda *a: devices):
        params = loop.fit(config, method, ds, sys.argv[1] + '/' + name)
      results[name] = {'/'.join(map(str, k)): np.asarray(v).tolist()
                       for k, v in jax.tree_util.tree_flatten_with_path(params)[0]}
      with open(sys.argv[1] + '/' + name + '/metrics.jsonl') as f:
        results[name + '_loss'] = [json.loads(l)['loss'] for l in f if '"train"' in l]
      results[name + '_sharding'] = str(jax.tree.leaves(params)[0].sharding)
    # Params-only init from the single-device run, restored onto the 2x2x2 mesh; lr ~ 0 so
    # one step leaves them as they were.
    config.train.update(init_from=sys.argv[1] + '/single', lr=1e-12, num_steps=1)
    with mock.patch.object(jax, 'devices', lambda *a: jax.local_devices()):
      params = loop.fit(config, method, ds, sys.argv[1] + '/init_from')
    results['init_from'] = {'/'.join(map(str, k)): np.asarray(v).tolist()
                            for k, v in jax.tree_util.tree_flatten_with_path(params)[0]}
    print(json.dumps(results))
''')


def test_sharded_step_equals_single_device_step(tmp_path):
  out = subprocess.run([sys.executable, '-c', SHARDED_SCRIPT, str(tmp_path)], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  results = json.loads(out.stdout.strip().splitlines()[-1])
  np.testing.assert_allclose(results['single_loss'], results['sharded_loss'], rtol=1e-5)
  assert len(results['single_loss']) == 3
  for key, value in results['single'].items():
    # atol covers the attention key bias: its true gradient is 0 (softmax is invariant to
    # it), so Adam turns float noise of ~1e-9 into ~1e-6 updates that differ by reduction order.
    np.testing.assert_allclose(value, results['sharded'][key], rtol=2e-5, atol=1e-5,
                               err_msg=key)
  assert 'fsdp' in results['sharded_sharding'] or 'tensor' in results['sharded_sharding']
  for key, value in results['single'].items():  # restored into another mesh, then 1 step
    np.testing.assert_allclose(results['init_from'][key], value, rtol=1e-5, atol=1e-6)


class _LogMethod(methods.Method):
  """loss = log(w): Adam with lr 2 drives w from 1 to -1 in one step, so step 2 is NaN."""
  trainable = True

  def init(self, rng):
    del rng
    return {'w': jnp.ones(())}

  def loss_fn(self, params, batch, rng):
    del rng
    return jnp.log(params["w"]) + 0.0 * batch['target'].sum(), {}


def test_non_finite_loss_stops_with_the_step(tmp_path):
  config = config_lib.base_config('sasrec', 'synthetic')
  config.train.update(batch_size=8, num_steps=10, lr=2.0, warmup_steps=0, grad_clip=0.0,
                      weight_decay=0.0, log_every=100)
  ds = dataset_lib.preprocess(synthetic.generate(num_users=50, num_items=30), kcore=2)
  with pytest.raises(loop.NonFiniteLossError, match='at step 2;'):
    loop.fit(config, _LogMethod(), ds, str(tmp_path))


def test_non_finite_params_after_the_last_step_are_refused(tmp_path):
  config = config_lib.base_config('sasrec', 'synthetic')
  config.train.update(batch_size=8, num_steps=1, lr=1e39, warmup_steps=0, weight_decay=0.0,
                      log_every=100)  # step 1's loss is finite; its update overflows
  ds = dataset_lib.preprocess(synthetic.generate(num_users=50, num_items=30), kcore=2)
  with pytest.raises(loop.NonFiniteLossError, match='not finite after step 1.*train.lr'):
    loop.fit(config, _LogMethod(), ds, str(tmp_path))


MULTIPROCESS_SCRIPT = textwrap.dedent('''
    import json, sys
    import jax, numpy as np
    from genrec_jax import config as config_lib, methods
    from genrec_jax.data import dataset as dataset_lib, synthetic
    from genrec_jax.train import distributed, loop
    workdir, address, count, index = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    if count > 1:
      distributed.initialize(address, count, index)
    config = config_lib.base_config('sasrec', 'synthetic')
    config.model.update(hidden=16, num_layers=1, dropout=0.0)
    config.train.update(batch_size=32, num_steps=8, log_every=4, warmup_steps=2)
    ds = dataset_lib.preprocess(synthetic.generate(num_users=200, num_items=64, seed=1),
                                kcore=2)
    params = loop.fit(config, methods.get('sasrec').build(config, ds), ds, workdir)
    leaves = [np.asarray(jax.experimental.multihost_utils.process_allgather(x, tiled=True))
              if not x.is_fully_addressable else np.asarray(x) for x in jax.tree.leaves(params)]
    # A file, not stdout: a full pipe would block this process in jax's shutdown barrier.
    with open(f'{workdir}/result_{index}.json', 'w') as f:
      json.dump({'process': jax.process_index(), 'count': jax.process_count(),
                 'params': [x.ravel().tolist() for x in leaves]}, f)
''')


def test_two_local_processes_train_in_step_and_match_one_process(tmp_path):
  import portpicker  # pylint: disable=g-import-not-at-top
  address = f'localhost:{portpicker.pick_unused_port()}'
  logs = [open(tmp_path / f'log_{i}.txt', 'w+') for i in range(2)]
  procs = [subprocess.Popen(
      [sys.executable, '-c', MULTIPROCESS_SCRIPT, str(tmp_path / 'multi'), address, '2',
       str(i)], cwd=REPO, stdout=log, stderr=subprocess.STDOUT) for i, log in enumerate(logs)]
  for p, log in zip(procs, logs):
    p.wait(timeout=300)
    log.seek(0)
    assert p.returncode == 0, log.read()[-3000:]
  results = []
  for i in range(2):
    with open(tmp_path / 'multi' / f'result_{i}.json') as f:
      results.append(json.load(f))
  assert sorted(r['process'] for r in results) == [0, 1]
  assert all(r['count'] == 2 for r in results)
  single = subprocess.run([sys.executable, '-c', MULTIPROCESS_SCRIPT, str(tmp_path / 'one'),
                           '', '1', '0'], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert single.returncode == 0, single.stderr[-3000:]
  with open(tmp_path / 'one' / 'result_0.json') as f:
    reference = json.load(f)['params']
  for a, b, ref in zip(results[0]['params'], results[1]['params'], reference):
    np.testing.assert_array_equal(a, b)  # the two processes hold the same params
    # Same global batches (rows interleaved across processes), so the same training.
    np.testing.assert_allclose(a, ref, rtol=1e-4, atol=1e-5)
  assert os.path.exists(tmp_path / 'multi' / 'metrics.jsonl')  # written by process 0 only


def test_early_stopping_keeps_the_best_validation(tmp_path):
  config = config_lib.base_config('sasrec', 'synthetic')
  config.model.update(hidden=8, num_layers=1)
  config.train.update(batch_size=16, num_steps=40, eval_every=4, log_every=4,
                      early_stop_metric='ndcg@10', early_stop_patience=2)
  ds = dataset_lib.preprocess(synthetic.generate(num_users=60, num_items=30), kcore=2)
  from genrec_jax import methods  # pylint: disable=g-import-not-at-top
  method = methods.get('sasrec').build(config, ds)
  scores = iter([0.1, 0.3, 0.2, 0.25, 0.9, 0.95])  # best at the 2nd validation (step 8)
  seen = []

  def validate(params):
    seen.append(jax.device_get(params))  # the step donates the device buffers
    return {'ndcg@10': next(scores)}

  params = loop.fit(config, method, ds, str(tmp_path), validate_fn=validate)
  assert len(seen) == 4  # stopped after 2 validations without improvement
  for best, got in zip(jax.tree.leaves(seen[1]), jax.tree.leaves(params)):
    np.testing.assert_array_equal(np.asarray(best), np.asarray(got))
  with open(tmp_path / 'metrics.jsonl') as f:
    steps = [json.loads(line)['step'] for line in f if '"train"' in line]
  assert max(steps) == 16
