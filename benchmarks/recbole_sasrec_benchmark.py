r"""SASRec beside RecBole 1.2.1's SASRec on the same 5-core MovieLens-100k split.

  python benchmarks/recbole_sasrec_benchmark.py                  # epoch times + profile
  python benchmarks/recbole_sasrec_benchmark.py --converge       # + test HR/NDCG@10 of both
  --recbole_python=/work/recbole_venv/bin/python  (a separate venv: python -m venv
  /work/recbole_venv; pip install /path/to/torch-2.13.0+cpu*.whl 'numpy<2' recbole==1.2.1
  'setuptools<81'; RecBole is never a dependency of genrec_jax)

Both see our split: it is written as RecBole atomic files (user, item, timestamp = the
item's index in the user's sequence, so RecBole's time order is ours exactly) and RecBole
splits it leave-one-out ('LS': valid_and_test) with no filtering. Same model and training
settings: hidden 64, 2 layers, 2 heads, FFN 64 (ours has FFN = hidden; RecBole's inner_size is
set to match), ReLU, dropout 0.2, max length 20, full-softmax CE, batch 256, lr 1e-3 (ours
AdamW with weight decay 0.01, 50 warmup steps and cosine decay; RecBole Adam, constant).

Measured in one process, interleaved on a machine that may be shared:
  (a) the same work per step: RecBole's per-prefix examples (loss at the last position) —
      RecBole's epoch (its _train_epoch, wall time) against ours (the jitted step of
      train/loop.py times steps per epoch, input pipeline included), and where our step
      time goes: XLA's FLOP count of the step against this machine's matmul rate, the
      forward, the backward, the output head and the optimizer timed apart;
  (b) whole-window training (every position of a window of 20 in one causal pass, the
      original SASRec's; `train.example_kind='window'`): its epoch against RecBole's, and
      with --converge both trained to early stopping on valid NDCG@10 (patience 5 epochs;
      RecBole's stopping_step) and scored on test (full ranking, past items not masked).
Appends the table to benchmarks/RESULTS.md (section "SASRec vs RecBole").
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import record  # benchmarks/record.py

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
  sys.path.insert(0, _REPO)

# pylint: disable=g-import-not-at-top,wrong-import-position
import flax.linen as nn
import jax
import jax.numpy as jnp

from genrec_jax import run
from genrec_jax.config import base_config
from genrec_jax.data import pipeline
from genrec_jax.data.load import load_dataset
from genrec_jax.methods import sasrec
from genrec_jax.train import loop
from genrec_jax.train import state as state_lib

DATASET_NAME = 'ml100k_genrec'


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--recbole_python', default='/work/recbole_venv/bin/python')
  p.add_argument('--workdir', default='/tmp/recbole_sasrec_benchmark')
  p.add_argument('--recbole_epochs', type=int, default=2,
                 help='timed RecBole epochs (0: time --steps steps of it instead)')
  p.add_argument('--steps', type=int, default=40, help='timed per-prefix steps')
  p.add_argument('--converge', choices=('', 'ours', 'both'), default='',
                 help='also train to early stopping and test: ours, or ours and RecBole')
  p.add_argument('--max_epochs', type=int, default=200, help='--converge: cap for both')
  p.add_argument('--no_record', action='store_true')
  return p.parse_args(argv)


def sasrec_config(kind: str, epochs: int = 1):
  """Our SASRec at RecBole's settings (module docstring)."""
  config = base_config('sasrec', 'ml-100k')
  config.name = f'SASRec ({kind})'
  config.model.update(hidden=64, num_layers=2, num_heads=2, dropout=0.2)
  config.sequential.loss = 'ce'
  config.train.update(example_kind=kind, batch_size=256, lr=1e-3, warmup_steps=50,
                      weight_decay=0.01, num_steps=0, num_epochs=epochs, eval_every=0,
                      early_stop_metric='ndcg@10', early_stop_patience=5, log_every=20)
  return config


def write_atomic_files(dataset, directory: str) -> str:
  """Our split as RecBole's <name>.inter (timestamps = position in each user's sequence)."""
  folder = os.path.join(directory, DATASET_NAME)
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(folder, f'{DATASET_NAME}.inter'), 'w') as f:
    f.write('user_id:token\titem_id:token\ttimestamp:float\n')
    for u in range(dataset.num_users):
      for t, item in enumerate(dataset.sequence(u)):
        f.write(f'{u}\t{item}\t{t}\n')
  return directory


def run_recbole(args, data_dir: str, *extra: str) -> dict:
  out = os.path.join(data_dir, f'recbole_{int(time.time() * 1000)}.json')
  worker = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'recbole_sasrec_worker.py')
  command = [args.recbole_python, worker, f'--data_dir={data_dir}',
             f'--dataset={DATASET_NAME}', f'--out={out}', *extra]
  subprocess.run(command, check=True, cwd=data_dir)
  with open(out) as f:
    return json.load(f)


def matmul_rate(n: int = 1024, reps: int = 8) -> float:
  """FLOP/s of a jitted float32 n^3 matmul (median): this machine's GEMM rate now."""
  a = jnp.ones((n, n), jnp.float32)
  f = jax.jit(jnp.matmul).lower(a, a).compile()
  f(a, a).block_until_ready()
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    f(a, a).block_until_ready()
    times.append(time.perf_counter() - start)
  return 2 * n**3 / statistics.median(times)


def _median_seconds(fn, reps: int, warmup: int = 2) -> float:
  for _ in range(warmup):
    jax.block_until_ready(fn())
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def ours_epoch(config, dataset, steps: int | None):
  """(seconds per epoch, steps per epoch, per-step profile) of our training at `config`:
  `steps` timed steps x steps per epoch (None: one whole epoch timed)."""
  method = run.build_method(config, dataset, tempfile.mkdtemp())
  tc = config.train
  per_epoch = pipeline.num_train_examples(dataset, tc.example_kind) // tc.batch_size
  tx, schedule = state_lib.make_optimizer(tc, per_epoch, method.restrict_optimizer)
  params = nn.unbox(method.init(jax.random.PRNGKey(0)))
  state = state_lib.TrainState(step=jnp.int32(0), params=params, opt_state=tx.init(params))
  step_fn = jax.jit(loop.make_train_step(method, tx, schedule), donate_argnums=0)
  batches = pipeline.train_iterator(dataset, batch_size=tc.batch_size, seed=0,
                                    kind=tc.example_kind, **method.example_options)
  batch = jax.device_put(next(batches))
  rng = jax.random.PRNGKey(1)
  lowered = jax.jit(loop.make_train_step(method, tx, schedule)).lower(state, batch, rng)
  cost = lowered.compile().cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  flops = float(cost.get('flops', 0.0))
  for _ in range(3):  # compile and warm up
    state, metrics = step_fn(state, batch, rng)
  jax.block_until_ready(metrics)
  count = per_epoch if steps is None else min(steps, per_epoch)
  start = time.perf_counter()
  for _ in range(count):  # the loop's work: next batch to the device, the step
    state, metrics = step_fn(state, jax.device_put(next(batches)), rng)
  jax.block_until_ready(metrics)
  seconds_per_step = (time.perf_counter() - start) / count
  profile = {'step_s': seconds_per_step, 'step_flops': flops}
  if tc.example_kind == 'prefix':  # where the step goes
    params = state.params
    loss = jax.jit(lambda p: method.loss_fn(p, batch, rng)[0])
    grad = jax.jit(jax.grad(lambda p: method.loss_fn(p, batch, rng)[0]))
    states = jax.jit(lambda p: method.user_states(p, batch['history'], rng))(params)
    vectors = method.item_vectors(params)
    head = jax.jit(jax.value_and_grad(lambda s, v: -jnp.mean(jax.nn.log_softmax(
        s @ v.T)[jnp.arange(s.shape[0]), batch['target']]), argnums=(0, 1)))
    grads = grad(params)
    update = jax.jit(lambda g, o, p: tx.update(g, o, p))
    opt_state = tx.init(params)
    data = lambda: jax.device_put(next(batches))
    profile.update(
        forward_s=_median_seconds(lambda: loss(params), 10),
        forward_backward_s=_median_seconds(lambda: grad(params), 10),
        head_forward_backward_s=_median_seconds(lambda: head(states, vectors), 10),
        optimizer_s=_median_seconds(lambda: update(grads, opt_state, params), 10),
        input_pipeline_s=_median_seconds(data, 10, warmup=1))
  return seconds_per_step * per_epoch, per_epoch, profile


def converge_ours(config, workdir: str) -> dict:
  start = time.perf_counter()
  results = run.train_and_evaluate(config, workdir)
  seconds = time.perf_counter() - start
  epochs = max((json.loads(line).get('epoch', 0) for line in open(
      os.path.join(workdir, 'metrics.jsonl')) if '"train"' in line), default=0)
  test = results['splits']['test']
  return {'train_and_eval_seconds': seconds, 'epochs_run': epochs,
          'test': {'hit@10': test['hr@10'], 'ndcg@10': test['ndcg@10']},
          'best_valid_ndcg@10': results['splits']['valid']['ndcg@10']}


def main(argv=None):
  args = parse_args(argv)
  os.makedirs(args.workdir, exist_ok=True)
  prefix_config = sasrec_config('prefix')
  dataset = load_dataset(prefix_config.data)
  data_dir = write_atomic_files(dataset, args.workdir)
  lines, rows = [], {}
  rate_before = matmul_rate()
  timing = ([f'--epochs={args.recbole_epochs}'] if args.recbole_epochs else
            [f'--steps={args.steps}'])
  recbole = run_recbole(args, data_dir, *timing)
  prefix_epoch, prefix_steps, prefix_profile = ours_epoch(prefix_config, dataset, args.steps)
  window_epoch, window_steps, window_profile = ours_epoch(sasrec_config('window'), dataset,
                                                          None)
  recbole_again = run_recbole(args, data_dir, *timing)
  rate_after = matmul_rate()
  if args.recbole_epochs:
    recbole_times = recbole['epoch_seconds'] + recbole_again['epoch_seconds']
    recbole_epoch = statistics.median(recbole_times)
    how = 'epochs: ' + ', '.join(f'{t:.1f}' for t in recbole_times)
  else:  # median step (over both runs) x steps per epoch
    recbole_epoch = statistics.median(recbole['step_seconds'] + recbole_again['step_seconds']
                                      ) * recbole['steps_per_epoch']
    how = f'median of {2 * args.steps} steps x steps per epoch'
  rows['timing'] = dict(recbole=recbole, recbole_again=recbole_again,
                        prefix=(prefix_epoch, prefix_steps, prefix_profile),
                        window=(window_epoch, window_steps, window_profile),
                        matmul=(rate_before, rate_after))
  p = prefix_profile
  lines += [
      f'RecBole train examples (per prefix): {recbole["train_examples"]:,}; ours '
      f'{pipeline.num_train_examples(dataset, "prefix"):,} per prefix, '
      f'{pipeline.num_train_examples(dataset, "window"):,} windows. RecBole torch '
      f'{recbole["torch"]}, {recbole["threads"]} threads.',
      f'Matmul rate (float32 1024^3, XLA): {rate_before / 1e9:.1f} GFLOP/s before, '
      f'{rate_after / 1e9:.1f} after.',
      '',
      '| training | epoch (s) | steps/epoch | s/step | vs RecBole epoch |',
      '|---|---|---|---|---|',
      f'| RecBole SASRec, per prefix ({how}) '
      f'| {recbole_epoch:.1f} | {-(-recbole["train_examples"] // 256)} | '
      f'{recbole_epoch / -(-recbole["train_examples"] // 256):.3f} | 1.0x |',
      f'| ours, per prefix (same work per step) | {prefix_epoch:.1f} | {prefix_steps} | '
      f'{p["step_s"]:.3f} | {recbole_epoch / prefix_epoch:.1f}x |',
      f'| ours, whole window (loss at every position) | {window_epoch:.2f} | {window_steps} | '
      f'{window_profile["step_s"]:.3f} | {recbole_epoch / window_epoch:.1f}x |',
      '',
      f'Our per-prefix step: {p["step_flops"] / 1e9:.2f} GFLOP (XLA cost analysis) in '
      f'{p["step_s"] * 1e3:.1f} ms = {p["step_flops"] / p["step_s"] / 1e9:.1f} GFLOP/s '
      f'({p["step_flops"] / p["step_s"] / max(rate_before, rate_after):.0%} of the matmul '
      f'rate). Forward {p["forward_s"] * 1e3:.1f} ms, forward + backward '
      f'{p["forward_backward_s"] * 1e3:.1f} ms (of which the output head, [256, 64] x '
      f'[64, {dataset.num_items}] + log-softmax and its gradient: '
      f'{p["head_forward_backward_s"] * 1e3:.1f} ms), optimizer update '
      f'{p["optimizer_s"] * 1e3:.1f} ms, next batch from the grain pipeline '
      f'{p["input_pipeline_s"] * 1e3:.1f} ms.',
  ]
  if args.converge:
    recbole_final = None
    if args.converge == 'both':
      recbole_final = run_recbole(args, data_dir, '--converge', f'--epochs={args.max_epochs}',
                                  '--patience=5')
    ours_final = converge_ours(sasrec_config('window', args.max_epochs),
                               os.path.join(args.workdir, f'ours_window_{int(time.time())}'))
    rows['converge'] = dict(recbole=recbole_final, ours=ours_final)
    lines += [
        '',
        '| at convergence (early stop on valid NDCG@10, patience 5) | epochs | train + '
        'valid (s) | test HR@10 | test NDCG@10 |',
        '|---|---|---|---|---|',
        (f'| RecBole SASRec, per prefix | {recbole_final.get("epochs_run")} | '
         f'{recbole_final["train_seconds"]:.0f} | {recbole_final["test"]["hit@10"]:.4f} | '
         f'{recbole_final["test"]["ndcg@10"]:.4f} |') if recbole_final else
        '| RecBole SASRec, per prefix | not run (--converge=ours) | | | |',
        f'| ours, whole window | {ours_final["epochs_run"]:.0f} | '
        f'{ours_final["train_and_eval_seconds"]:.0f} | {ours_final["test"]["hit@10"]:.4f} | '
        f'{ours_final["test"]["ndcg@10"]:.4f} |',
    ]
  text = '\n'.join(lines)
  print(text)
  with open(os.path.join(args.workdir, 'benchmark.json'), 'w') as f:
    json.dump(rows, f, indent=1, default=str)
  if not args.no_record:
    entry = (f'### {datetime.date.today()}, {record.cpu_model()} ({os.cpu_count()} cores, '
             'shared with other jobs)\n\n'
             f'    python benchmarks/{os.path.basename(__file__)} '
             f'{shlex.join(sys.argv[1:])}\n\n{text}\n')
    record.add_entry(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'RESULTS.md'),
                     'SASRec vs RecBole', entry)


if __name__ == '__main__':
  main()
