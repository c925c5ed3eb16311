r"""Training throughput: achieved FLOP/s of the train step, and whole-sequence vs per-prefix.

  python benchmarks/train_benchmark.py                 # full run (5-7 min), appends RESULTS.md
  python benchmarks/train_benchmark.py --steps 3 --no_record --skip_large   # smoke test
  # glibc then keeps freed memory mapped: XLA's per-call temp buffers stop page-faulting
  MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000 \
      python benchmarks/train_benchmark.py

In one process, on MovieLens-100k with an LC-Rec setting fixed in `cpu_config` (RQ-KMeans
4 x 256 codes, 2 layers, d=128, whole-sequence training):
  1. Matmul FLOP/s of this machine: jitted float32 n x n x n matmuls (n = 1024, 2048), median
     of several calls after a warm-up: the peak-ish rate XLA's CPU GEMM reaches here.
  2. The train step's achieved FLOP/s, for the `cpu` model (2 layers, d=128) and a larger one
     (4 layers, d=256, intermediate 1024, 8 heads / 4 kv heads), on whole-sequence batches.
     The step is the one `train/loop.py` runs (value_and_grad of `method.loss_fn`, optax
     AdamW with clipping and the warmup-cosine schedule, donated state, under the mesh).
     FLOPs per step two ways: XLA's cost analysis of the compiled step, and an analytic count
     6 x (matrix params x positions) + 12 x layers x attention width x (query, key) pairs,
     where the tied LM head counts only at positions that produce logits. Positions include
     padding: that is what runs. The rate is set against the matmul rate at the start and just
     before the row (the machine may be shared), and per CPU-second (user + sys time of this
     process, which the load does not shrink) against the matmul's FLOP per CPU-second.
     Where the time goes: CPU time, minor page faults and XLA's temp buffer per step, and for
     the `cpu` whole-sequence step the forward, forward + backward, attention core and LM
     head + log-softmax timed apart.
  3. Whole-sequence vs per-prefix training of the `cpu` model: seconds per step x steps per
     epoch (`num_train_examples(dataset, kind) // batch_size`), both kinds training the same
     target items once per epoch. The sequence batch is the config's (32 chunks); per-prefix
     runs at 256 examples and at the batch whose padded positions per step match the
     sequence batch's.

Real data: `load_dataset` of the config's data, MiniLM item embeddings (`item_embeddings`)
and RQ-KMeans SIDs (`build_sids`), cached under --workdir (first run ~30 s more). Each timed
step gets its own batch from `train_iterator`, put on the device before timing; step times are
per call with block_until_ready, median over --steps calls after --warmup calls.
"""

from __future__ import annotations

import argparse
import datetime
import os
import resource
import shlex
import statistics
import sys
import time

import numpy as np

import record  # benchmarks/record.py (scripts run from this folder's path)

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:  # run as a script from anywhere
  sys.path.insert(0, _REPO)

# pylint: disable=g-import-not-at-top,wrong-import-position
import flax.linen as nn
import jax
import jax.numpy as jnp

from genrec_jax import config as config_lib
from genrec_jax.data import pipeline
from genrec_jax.losses import target_log_probs
from genrec_jax.data.load import load_dataset
from genrec_jax.embed.cache import item_embeddings
from genrec_jax import methods
from genrec_jax.methods import lcrec
from genrec_jax.methods.sid_tokens import stream
from genrec_jax.models import attention
from genrec_jax.tokenize.build import build_sids
from genrec_jax.train import loop
from genrec_jax.train import sharding as sharding_lib
from genrec_jax.train import state as state_lib
# pylint: enable=g-import-not-at-top,wrong-import-position

RESULTS_HEADING = 'Training: achieved FLOP/s and whole-sequence vs per-prefix'
LARGE = dict(hidden_size=256, intermediate_size=1024, num_layers=4, num_heads=8,
             num_kv_heads=4)
ENV_PREFIXES = ('MALLOC_', 'XLA_', 'LD_PRELOAD')  # settings that change these timings
PAGE = resource.getpagesize()


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--workdir', default='/tmp/genrec_train_bench',
                 help='data / embedding / SID caches')
  p.add_argument('--steps', type=int, default=20, help='timed train steps per row')
  p.add_argument('--large_steps', type=int, default=10,
                 help='timed steps of the large model (~9 s each on a loaded 2-core machine)')
  p.add_argument('--warmup', type=int, default=3, help='untimed steps after compiling')
  p.add_argument('--matmul_sizes', type=int, nargs='+', default=[1024, 2048])
  p.add_argument('--matmul_reps', type=int, default=10)
  p.add_argument('--seq_batch', type=int, default=32, help='whole-sequence chunks per step')
  p.add_argument('--prefix_batch', type=int, default=256, help='per-prefix examples per step '
                 '(a position-matched batch is run too)')
  p.add_argument('--breakdown_reps', type=int, default=7, help='0 skips the breakdown')
  p.add_argument('--skip_large', action='store_true', help='only the cpu model')
  p.add_argument('--no_record', action='store_true', help='do not append to RESULTS.md')
  p.add_argument('--results', default=os.path.join(_REPO, 'benchmarks', 'RESULTS.md'))
  return p.parse_args(argv)


# ------------------------------------------------------------------------------ timing --


class Meter:
  """Wall time, CPU time (user, sys; all threads) and minor page faults over a block."""

  def __enter__(self):
    self._usage = resource.getrusage(resource.RUSAGE_SELF)
    self._start = time.perf_counter()
    return self

  def __exit__(self, *exc):
    usage = resource.getrusage(resource.RUSAGE_SELF)
    self.wall = time.perf_counter() - self._start
    self.user = usage.ru_utime - self._usage.ru_utime
    self.sys = usage.ru_stime - self._usage.ru_stime
    self.cpu = self.user + self.sys
    self.faults = usage.ru_minflt - self._usage.ru_minflt


def time_calls(fn, reps: int, warmup: int = 2) -> tuple[list[float], Meter]:
  """(seconds of each of `reps` calls of fn, its result blocked on; Meter over them)."""
  for _ in range(warmup):
    jax.block_until_ready(fn())
  times = []
  with Meter() as meter:
    for _ in range(reps):
      start = time.perf_counter()
      jax.block_until_ready(fn())
      times.append(time.perf_counter() - start)
  return times, meter


def matmul_rate(n: int, reps: int) -> dict:
  """Median time, FLOP/s and FLOP per CPU-second of a jitted float32 n x n x n matmul."""
  keys = jax.random.split(jax.random.PRNGKey(0))
  a = jax.random.normal(keys[0], (n, n), jnp.float32)
  b = jax.random.normal(keys[1], (n, n), jnp.float32)
  matmul = jax.jit(jnp.matmul).lower(a, b).compile()
  times, meter = time_calls(lambda: matmul(a, b), reps)
  flops = 2.0 * n**3
  seconds = statistics.median(times)
  return {'n': n, 'seconds': seconds, 'rate': flops / seconds,
          'cpu_rate': flops * reps / max(meter.cpu, 1e-9), 'load': os.getloadavg()[0]}


# ------------------------------------------------------------------------------- setup --


def cpu_config():
  """LC-Rec on MovieLens-100k, whole-sequence training, RQ-KMeans 4 x 256 codes (fixed here,
  so the benchmark does not move when config files do)."""
  config = config_lib.base_config(method='lcrec', dataset='ml-100k')
  config.tokenize.update(method='rq_kmeans', levels=4, codes_per_level=256, pca_dim=32)
  config.train.update(batch_size=32, num_epochs=10, lr=1e-3, warmup_steps=100,
                      weight_decay=0.01, example_kind='sequence')
  return config


def load_inputs(config, workdir: str):
  """(dataset, SID table) of the config: real ML-100k, MiniLM embeddings, RQ-KMeans SIDs."""
  dataset = load_dataset(config.data, workdir)
  embeddings = item_embeddings(config.embed, dataset, workdir)
  sids = build_sids(config.tokenize, dataset, embeddings, config.seed, workdir)
  return dataset, sids


def positions_per_example(dataset, kind: str, sid_len: int) -> tuple[int, int, int]:
  """(matmul positions, key slots per query, LM-head positions) of one example.

  sequence: one causal pass over (H + C) items x L tokens, logits everywhere.
  prefix: prefill of H x L history tokens into a cache of H x L + L - 1 slots (logits at the
  last one only), then the target's first L - 1 tokens appended (logits for each).
  """
  if kind == 'sequence':
    width = (dataset.max_history + pipeline.TARGETS_PER_CHUNK) * sid_len
    return width, width, width
  history = dataset.max_history * sid_len
  return history + sid_len - 1, history + sid_len - 1, sid_len


def analytic_flops(params, model_config, dataset, kind: str, batch: int, sid_len: int) -> float:
  """6 x matrix params x positions + 12 x layers x attention width x (query, key) pairs."""
  positions, keys, head_positions = positions_per_example(dataset, kind, sid_len)
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  matrices = sum(int(np.prod(x.shape)) for path, x in flat
                 if 'kernel' in jax.tree_util.keystr(path))
  embedding = model_config.vocab_size * model_config.hidden_size  # tied: the LM head matmul
  attention_width = model_config.num_attention_heads * model_config.head_dim
  # Masked dense attention computes every (query, key slot) pair: QK^T and PV, fwd + 2x bwd.
  attention_flops = 12 * model_config.num_hidden_layers * attention_width * positions * keys
  return batch * (6.0 * (matrices * positions + embedding * head_positions) + attention_flops)


def batch_stats(batch: dict, token_lengths: np.ndarray) -> dict:
  """Real (non-padding) SID tokens and trained target items of a host batch."""
  length = lambda items: np.where(items >= 0, token_lengths[np.maximum(items, 0)], 0).sum()
  if 'items' in batch:
    return {'tokens': int(length(batch['items'])), 'targets': int(batch['is_target'].sum())}
  return {'tokens': int(length(batch['history']) + length(batch['target'])),
          'targets': len(batch['target'])}


def xla_cost(compiled) -> dict:
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return {'flops': float(cost['flops']), 'bytes': float(cost.get('bytes accessed', np.nan)),
          'temp': float(compiled.memory_analysis().temp_size_in_bytes)}


def bench_row(args, config, dataset, sids, *, label: str, kind: str, batch_size: int,
              steps: int) -> dict:
  """Compiles the train step for (config.model, kind, batch_size), times it, counts FLOPs."""
  tc = config.train
  method = lcrec.build(config, dataset, methods.BuildInputs(sids=sids))
  model_config = method.backbone.model.config
  mesh = sharding_lib.make_mesh(config.sharding)
  rules = sharding_lib.rules(config.sharding)
  steps_per_epoch = pipeline.num_train_examples(dataset, kind) // batch_size
  tx, schedule = state_lib.make_optimizer(tc, max(steps_per_epoch, 1) * tc.num_epochs)
  init_rng, train_rng = jax.random.split(jax.random.PRNGKey(config.seed))
  state, shardings = state_lib.create_sharded_state(method.init, tx, mesh, rules, init_rng)
  num_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
  train_step = jax.jit(loop.make_train_step(method, tx, schedule, tc.grad_accum_steps),
                       donate_argnums=0, out_shardings=(shardings, None))

  # Distinct real batches for every call, on the device before any timing.
  total = args.warmup + steps
  batches_iter = pipeline.train_iterator(dataset, batch_size=batch_size, seed=config.seed,
                                         kind=kind)
  host = [next(batches_iter) for _ in range(total)]
  token_lengths = (method.item_tokens_host >= 0).sum(1)
  stats = [batch_stats(b, token_lengths) for b in host[args.warmup:]]
  batch_sharding = sharding_lib.batch_sharding(mesh, rules)
  rngs = [jax.random.fold_in(train_rng, i) for i in range(total)]

  with jax.set_mesh(mesh):
    batches = [sharding_lib.global_batch(b, batch_sharding) for b in host]
    start = time.perf_counter()
    compiled = train_step.lower(state, batches[0], rngs[0]).compile()
    compile_s = time.perf_counter() - start
    cost = xla_cost(compiled)
    for i in range(args.warmup):
      state, metrics = compiled(state, batches[i], rngs[i])
    jax.block_until_ready((state, metrics))
    # The machine's matmul rate right now (it may be shared with other jobs).
    now = matmul_rate(2048, reps=5)
    load = os.getloadavg()[0]
    times = []
    with Meter() as meter:
      for i in range(args.warmup, total):
        start = time.perf_counter()
        state, metrics = compiled(state, batches[i], rngs[i])
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - start)
  loss = float(metrics['loss'])

  positions, _, _ = positions_per_example(dataset, kind, sids.max_len)
  seconds = statistics.median(times)
  row = dict(
      label=label, kind=kind, batch=batch_size, params=num_params,
      positions=batch_size * positions,
      tokens=float(np.mean([s['tokens'] for s in stats])),
      targets=float(np.mean([s['targets'] for s in stats])),
      xla_flops=cost['flops'], bytes=cost['bytes'], temp=cost['temp'],
      analytic_flops=analytic_flops(state.params, model_config, dataset, kind, batch_size,
                                    sids.max_len),
      compile_s=compile_s, seconds=seconds, min_seconds=min(times),
      cpu=meter.cpu / steps, sys=meter.sys / steps, cores=meter.cpu / meter.wall,
      faults=meter.faults / steps, steps=steps, now=now, load=load, loss=loss,
      steps_per_epoch=steps_per_epoch)
  row['rate'] = cost['flops'] / seconds
  row['cpu_rate'] = cost['flops'] / row['cpu']
  print(f'{label} {kind} B={batch_size}: {1e3 * seconds:.0f} ms/step (min '
        f'{1e3 * min(times):.0f}), XLA {cost["flops"] / 1e9:.1f} GFLOP -> '
        f'{row["rate"] / 1e9:.1f} GFLOP/s, analytic {row["analytic_flops"] / 1e9:.1f} GFLOP, '
        f'matmul now {now["rate"] / 1e9:.1f} GFLOP/s, CPU {1e3 * row["cpu"]:.0f} ms/step '
        f'(sys {1e3 * row["sys"]:.0f}), {row["faults"] * PAGE / 1e6:.0f} MB faulted/step, '
        f'compile {compile_s:.1f} s, loss {loss:.3f}, load {load:.2f}', flush=True)
  return row


def breakdown(args, config, dataset, sids) -> list[dict]:
  """Parts of the `cpu` whole-sequence step timed alone (fresh params, one real batch)."""
  method = lcrec.build(config, dataset, methods.BuildInputs(sids=sids))
  model = method.backbone.model
  cfg = model.config
  params = nn.unbox(method.init(jax.random.PRNGKey(config.seed)))
  host = next(pipeline.train_iterator(dataset, batch_size=args.seq_batch, seed=config.seed,
                                      kind='sequence'))
  batch = {k: jnp.asarray(v) for k, v in host.items()}
  rng = jax.random.PRNGKey(0)
  tokens = stream(method.item_tokens, batch['items'], batch['is_target'])[0]
  loss = lambda p: method.loss_fn(p, batch, rng)[0]

  def head_loss(p, hidden):
    logits = model.apply({'params': p}, hidden, method=model.logits)
    return -jnp.sum(target_log_probs(logits[:, :-1], tokens[:, 1:]))

  # The core of attention.py (scores, mask, softmax, weighted values) at this batch's shapes.
  size, length = tokens.shape
  groups = cfg.num_attention_heads // cfg.num_key_value_heads
  mask = jnp.tril(jnp.ones((length, length), bool))[None] & (tokens >= 0)[:, None, :]

  def attention_core(query, key, value):
    logits = jnp.einsum('BTKGH,BSKH->BKGTS', query, key) * cfg.head_dim**-0.5
    logits = jnp.where(mask[:, None, None], logits, attention.MASK_VALUE)
    out = jnp.einsum('BKGTS,BSKH->BTKGH', jax.nn.softmax(logits, axis=-1), value)
    return jnp.sum(out * out)

  keys = jax.random.split(rng, 3)
  kv_shape = (size, length, cfg.num_key_value_heads, cfg.head_dim)
  query = jax.random.normal(keys[0], (*kv_shape[:3], groups, cfg.head_dim))
  key, value = jax.random.normal(keys[1], kv_shape), jax.random.normal(keys[2], kv_shape)
  hidden = jax.random.normal(keys[0], (size, length, cfg.hidden_size))
  parts = [
      ('forward (loss)', jax.jit(loss), (params,), 1),
      ('forward + backward (value_and_grad)', jax.jit(jax.value_and_grad(loss)), (params,), 1),
      (f'attention core fwd + bwd, x {cfg.num_hidden_layers} layers',
       jax.jit(jax.value_and_grad(attention_core, argnums=(0, 1, 2))), (query, key, value),
       cfg.num_hidden_layers),
      ('LM head + log-softmax fwd + bwd', jax.jit(jax.value_and_grad(head_loss, (0, 1))),
       (params, hidden), 1),
  ]
  out = []
  for name, fn, fn_args, times in parts:
    compiled = fn.lower(*fn_args).compile()
    flops = xla_cost(compiled)['flops'] * times
    seconds, meter = time_calls(lambda c=compiled, a=fn_args: c(*a), args.breakdown_reps)
    seconds = statistics.median(seconds) * times
    out.append({'part': name, 'seconds': seconds, 'flops': flops,
                'sys': meter.sys / args.breakdown_reps * times})
    print(f'breakdown {name}: {1e3 * seconds:.0f} ms, {flops / 1e9:.1f} GFLOP', flush=True)
  return out


# ------------------------------------------------------------------------------ report --


def machine_info() -> dict[str, str]:
  cpu = record.cpu_model()
  return {'nproc': str(os.cpu_count()), 'cpu': cpu, 'jax': jax.__version__,
          'devices': str(jax.devices())}


def command_line() -> str:
  env = [f'{k}={shlex.quote(v)}' for k, v in sorted(os.environ.items())
         if k.startswith(ENV_PREFIXES)]
  argv = [os.path.relpath(sys.argv[0], _REPO), *sys.argv[1:]]
  return ' '.join([*env, 'python', *(shlex.quote(a) for a in argv)])


def render(args, info, config, dataset, sids, matmuls, rows, parts, load_start, load_end,
           elapsed) -> str:
  """The markdown section: setup, machine, command, tables."""
  # Peak-ish: the best matmul rate seen in the run (the load varies while it runs).
  seen = [*matmuls, *(r['now'] for r in rows)]
  peak = {'rate': max(mm['rate'] for mm in seen), 'cpu_rate': max(mm['cpu_rate'] for mm in seen)}
  g = lambda x: f'{x / 1e9:.1f}'
  m = config.model
  lines = [
      f'### {datetime.datetime.now().strftime("%Y-%m-%d %H:%M")}',
      '',
      f'- Command (repo root): `{command_line()}` ({elapsed:.0f} s in all)',
      f'- Machine: nproc={info["nproc"]}, CPU {info["cpu"]}, jax {info["jax"]} '
      f'({info["devices"]}), float32.',
      f'- Load average (1/5/15 min): {load_start} at start, {load_end} at end (on '
      f'{info["nproc"]} cores; other jobs shared the machine, so wall-clock rates are noisy: '
      'each row gives its 1-min load, the 2048^3 matmul rate just before its steps, and '
      'per-CPU-second rates, which the load does not shrink).',
      f'- Data: MovieLens-100k ({dataset.num_users} users, {dataset.num_items} items), '
      f'max_history H={dataset.max_history}, {pipeline.TARGETS_PER_CHUNK} targets per '
      f'sequence chunk; MiniLM embeddings -> RQ-KMeans {sids.level_sizes} SIDs (up to '
      f'{sids.max_len} tokens per item, vocab {sids.vocab_size}). Model `cpu`: '
      f'{m.num_layers} layers, d={m.hidden_size}, intermediate {m.intermediate_size}, '
      f'{m.num_heads} heads / {m.num_kv_heads} kv heads; `large`: {LARGE["num_layers"]} '
      f'layers, d={LARGE["hidden_size"]}, intermediate {LARGE["intermediate_size"]}, '
      f'{LARGE["num_heads"]} heads / {LARGE["num_kv_heads"]} kv heads. Tied embeddings.',
      f'- Step: the train/loop.py step (value_and_grad + AdamW, clip 1.0, donated state), '
      f'median of {args.steps} timed calls ({args.large_steps} for `large`) after '
      f'{args.warmup} warm-up calls, each on its own batch.',
      '',
      f'**Matmul** (jitted float32 n x n x n, median of {args.matmul_reps} after warm-up)',
      '',
      '| n | ms | GFLOP/s | GFLOP per CPU-s | load 1m |',
      '|---:|---:|---:|---:|---:|',
  ]
  for mm in matmuls:
    lines.append(f'| {mm["n"]} | {1e3 * mm["seconds"]:.2f} | {g(mm["rate"])} '
                 f'| {g(mm["cpu_rate"])} | {mm["load"]:.1f} |')
  lines += [
      '',
      f'Peak below: the best matmul rates seen in this run (this table and the 2048^3 '
      f'"now" runs before each row): {g(peak["rate"])} GFLOP/s, {g(peak["cpu_rate"])} GFLOP '
      'per CPU-s.',
      '',
      '**Train step FLOPs and achieved rate** (positions = padded token slots that run; XLA = '
      '`compiled.cost_analysis()["flops"]`; analytic = 6 x matrix params x positions + '
      '12 x layers x attention width x query-key pairs; now = 2048^3 matmul just before)',
      '',
      '| model | kind | batch | params | positions/step | XLA GFLOP/step '
      '| analytic GFLOP/step | analytic / XLA | ms/step (min) | XLA GFLOP/s | % of peak '
      '| matmul now GFLOP/s | % of now | GFLOP per CPU-s | % of peak per CPU-s | compile s '
      '| load 1m |',
      '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for r in rows:
    lines.append(
        f'| {r["label"]} | {r["kind"]} | {r["batch"]} | {r["params"] / 1e6:.2f}M '
        f'| {r["positions"]:,} | {g(r["xla_flops"])} | {g(r["analytic_flops"])} '
        f'| {r["analytic_flops"] / r["xla_flops"]:.3f} '
        f'| {1e3 * r["seconds"]:.0f} ({1e3 * r["min_seconds"]:.0f}) | {g(r["rate"])} '
        f'| **{100 * r["rate"] / peak["rate"]:.0f}%** | {g(r["now"]["rate"])} '
        f'| {100 * r["rate"] / r["now"]["rate"]:.0f}% | {g(r["cpu_rate"])} '
        f'| **{100 * r["cpu_rate"] / peak["cpu_rate"]:.0f}%** | {r["compile_s"]:.1f} '
        f'| {r["load"]:.1f} |')
  lines += [
      '',
      '**Where the step time goes** (CPU = user + sys time of all threads per step; cores '
      'used = CPU / wall; faulted = minor page faults x page size per step; temp = XLA\'s temp '
      'buffer per call; accessed = XLA cost-analysis bytes)',
      '',
      '| model | kind | batch | wall ms | CPU ms | sys ms | cores used | faulted MB '
      '| XLA temp MB | XLA GB accessed | FLOP / byte |',
      '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for r in rows:
    lines.append(
        f'| {r["label"]} | {r["kind"]} | {r["batch"]} | {1e3 * r["seconds"]:.0f} '
        f'| {1e3 * r["cpu"]:.0f} | {1e3 * r["sys"]:.0f} | {r["cores"]:.2f} '
        f'| {r["faults"] * PAGE / 1e6:.0f} | {r["temp"] / 1e6:.0f} | {r["bytes"] / 1e9:.2f} '
        f'| {r["xla_flops"] / r["bytes"]:.1f} |')
  if parts:
    lines += [
        '',
        f'Parts of the `cpu` whole-sequence step (batch {args.seq_batch}), timed alone, median '
        f'of {args.breakdown_reps}:',
        '',
        '| part | ms | sys ms | XLA GFLOP | GFLOP/s |',
        '|---|---:|---:|---:|---:|',
    ]
    for p in parts:
      lines.append(f'| {p["part"]} | {1e3 * p["seconds"]:.0f} | {1e3 * p["sys"]:.0f} '
                   f'| {g(p["flops"])} | {g(p["flops"] / p["seconds"])} |')
  sequence = next(r for r in rows if r['label'] == 'cpu' and r['kind'] == 'sequence')
  seq_epoch = sequence['seconds'] * sequence['steps_per_epoch']
  seq_flops = sequence['xla_flops'] * sequence['steps_per_epoch']
  lines += [
      '',
      '**Whole-sequence vs per-prefix, `cpu` model, one epoch** (tokens = real SID tokens '
      'per step, padding excluded; targets = target items trained per step; both kinds train '
      f'each of the {pipeline.num_train_examples(dataset, "prefix"):,} training targets once '
      'per epoch)',
      '',
      '| kind | batch | positions/step | tokens/step | targets/step | steps/epoch | s/step '
      '| s/epoch | tokens/s | targets/s | XLA TFLOP/epoch | whole-sequence speed-up '
      '(FLOP ratio) |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for r in rows:
    if r['label'] != 'cpu':
      continue
    epoch = r['seconds'] * r['steps_per_epoch']
    flops = r['xla_flops'] * r['steps_per_epoch']
    speedup = ('-' if r is sequence else
               f'**{epoch / seq_epoch:.1f}x** ({flops / seq_flops:.1f}x)')
    lines.append(
        f'| {r["kind"]} | {r["batch"]} | {r["positions"]:,} | {r["tokens"]:,.0f} '
        f'| {r["targets"]:.0f} | {r["steps_per_epoch"]} | {r["seconds"]:.3f} | {epoch:.1f} '
        f'| {r["tokens"] / r["seconds"]:,.0f} | {r["targets"] / r["seconds"]:,.0f} '
        f'| {flops / 1e12:.1f} | {speedup} |')
  return '\n'.join(lines) + '\n'


def main(argv=None) -> None:
  args = parse_args(argv)
  began = time.perf_counter()
  info = machine_info()
  load_start = record.load_str()
  print(f'machine: {info}  load avg {load_start}\ncommand: {command_line()}', flush=True)

  matmuls = []
  for n in args.matmul_sizes:
    matmuls.append(matmul_rate(n, args.matmul_reps))
    print(f'matmul {n}^3: {1e3 * matmuls[-1]["seconds"]:.2f} ms, '
          f'{matmuls[-1]["rate"] / 1e9:.1f} GFLOP/s, '
          f'{matmuls[-1]["cpu_rate"] / 1e9:.1f} GFLOP per CPU-s', flush=True)

  config = cpu_config()
  dataset, sids = load_inputs(config, args.workdir)
  seq_positions = positions_per_example(dataset, 'sequence', sids.max_len)[0]
  prefix_positions = positions_per_example(dataset, 'prefix', sids.max_len)[0]
  matched = max(1, round(args.seq_batch * seq_positions / prefix_positions))

  rows = [bench_row(args, config, dataset, sids, label='cpu', kind='sequence',
                    batch_size=args.seq_batch, steps=args.steps)]
  for batch in sorted({args.prefix_batch, matched}, reverse=True):
    rows.append(bench_row(args, config, dataset, sids, label='cpu', kind='prefix',
                          batch_size=batch, steps=args.steps))
  if not args.skip_large:
    large = cpu_config()
    large.model.update(LARGE)
    rows.append(bench_row(args, large, dataset, sids, label='large', kind='sequence',
                          batch_size=args.seq_batch, steps=args.large_steps))
  parts = breakdown(args, config, dataset, sids) if args.breakdown_reps else []

  report = render(args, info, config, dataset, sids, matmuls, rows, parts, load_start,
                  record.load_str(), time.perf_counter() - began)
  record.publish(report, args.results, RESULTS_HEADING, args.no_record)


if __name__ == '__main__':
  main()
