"""RQ-KMeans tokenizer: genrec_jax (jitted JAX) vs scikit-learn KMeans level by level.

Both quantise the same seeded Gaussian-mixture embeddings (float32) into L levels of K codes:
ours with `fit_rq_kmeans`, scikit-learn with KMeans(n_init=1, init='k-means++', same max_iter
and tol) fitted on each level's residuals. Reported per catalogue size, over several seeds:
median wall time (ours after a warm-up call that compiles; the compile time, from
jax.monitoring's compile events, is reported apart), mean total final inertia sum_n ||r_n^(L+1)||^2 (float64, same formula for both), and
k-means iterations per level. The two `tol` are not the same rule: ours stops when the relative
inertia improvement is <= tol; scikit-learn when the centre shift is <= tol * mean variance
(or labels stop changing), so it usually runs more iterations. A third row runs ours with
tol = 0, i.e. until the assignments stop changing (or max_iter), to separate the stopping rule
from the rest.

    python benchmarks/tokenizer_benchmark.py      # 10k (20 seeds) and 100k (5 seeds), appends
    python benchmarks/tokenizer_benchmark.py --sizes 2000 --seeds 2 --no-append  # smoke run

Needs scikit-learn (`pip install scikit-learn`; benchmark only, the library never imports
it). OpenBLAS reads OPENBLAS_CORETYPE at load time, so compare both settings with two runs,
e.g. prefixing `env -u OPENBLAS_CORETYPE`.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import statistics
import sys
import time

import jax
import numpy as np

import record  # benchmarks/record.py (scripts run from this folder's path)
import sklearn
from sklearn.cluster import KMeans
import threadpoolctl

from genrec_jax.tokenize import rq_kmeans

RESULTS_HEADING = 'Tokenizer: RQ-KMeans vs scikit-learn'


def make_embeddings(num_items: int, dim: int, seed: int) -> np.ndarray:
  """[N, D] float32: topics > subtopics > noise, skewed topic sizes, decaying dim scales."""
  rng = np.random.default_rng(seed)
  num_topics, num_subtopics = 64, 16
  topic_centres = rng.normal(size=(num_topics, dim)) * 3.0
  subtopic_offsets = rng.normal(size=(num_topics, num_subtopics, dim)) * 1.2
  topic_weights = rng.dirichlet(np.full(num_topics, 0.5))
  topics = rng.choice(num_topics, size=num_items, p=topic_weights)
  subtopics = rng.integers(0, num_subtopics, size=num_items)
  noise = rng.normal(size=(num_items, dim)) * 0.6
  dim_scale = 1.0 / np.sqrt(1.0 + np.arange(dim) / 4.0)  # like real embeddings' spectrum
  x = (topic_centres[topics] + subtopic_offsets[topics, subtopics] + noise) * dim_scale
  return x.astype(np.float32)


def final_inertia(x: np.ndarray, codebooks: list[np.ndarray], codes: np.ndarray) -> float:
  """sum_n ||x_n - sum_l codebook_l[code_nl]||^2 in float64."""
  reconstruction = sum(np.asarray(book, np.float64)[codes[:, level]]
                       for level, book in enumerate(codebooks))
  return float(np.sum((np.asarray(x, np.float64) - reconstruction) ** 2))


def run_ours(x: np.ndarray, args: argparse.Namespace, seed: int, tol: float) -> dict:
  start = time.perf_counter()
  model = rq_kmeans.fit_rq_kmeans(x, args.levels, args.codes, jax.random.key(seed),
                                  num_iters=args.max_iter, tol=tol)
  codes, _ = rq_kmeans.encode(model, x)
  codes = np.asarray(jax.block_until_ready(codes))
  seconds = time.perf_counter() - start
  return dict(seconds=seconds,
              inertia=final_inertia(x, [np.asarray(c) for c in model.codebooks], codes),
              iters=[int(i) for i in model.level_num_iters])


def run_sklearn(x: np.ndarray, args: argparse.Namespace, seed: int, tol: float) -> dict:
  start = time.perf_counter()
  residual = x
  codebooks, codes, iters = [], [], []
  for level in range(args.levels):
    model = KMeans(n_clusters=args.codes, init='k-means++', n_init=1, max_iter=args.max_iter,
                   tol=tol, random_state=seed * args.levels + level).fit(residual)
    centres = model.cluster_centers_.astype(np.float32)
    residual = residual - centres[model.labels_]
    codebooks.append(centres)
    codes.append(model.labels_)
    iters.append(int(model.n_iter_))
  seconds = time.perf_counter() - start
  return dict(seconds=seconds, inertia=final_inertia(x, codebooks, np.stack(codes, 1)),
              iters=iters)


def benchmark_size(num_items: int, num_seeds: int, args: argparse.Namespace) -> list[dict]:
  """One row per method: sklearn first (the reference), then ours at tol and at tol = 0."""
  x = make_embeddings(num_items, args.dim, seed=num_items)
  methods = {
      'scikit-learn KMeans': (run_sklearn, args.tol),
      'genrec_jax RQ-KMeans': (run_ours, args.tol),
      'genrec_jax RQ-KMeans, tol 0 (until labels stop changing)': (run_ours, 0.0),
  }
  compile_seconds = []

  def record_compile(event: str, seconds: float, **_) -> None:
    # Every jit compilation reports its tracing, lowering and XLA compile durations.
    if event.startswith('/jax/core/compile/'):
      compile_seconds.append(seconds)

  jax.monitoring.register_event_duration_secs_listener(record_compile)
  run_ours(x, args, 1000, args.tol)  # warm-up: compiles every jitted function for these shapes
  jax.monitoring.unregister_event_duration_listener(record_compile)
  runs = {name: [] for name in methods}
  for seed in range(num_seeds):  # interleaved, so changes in machine load hit all alike
    for name, (run, tol) in methods.items():
      runs[name].append(run(x, args, seed, tol))
  rows = []
  for name, method_runs in runs.items():
    inertias = np.asarray([r['inertia'] for r in method_runs])
    rows.append(dict(
        num_items=num_items, method=name, num_seeds=num_seeds,
        seconds=statistics.median(r['seconds'] for r in method_runs),
        inertia=inertias.mean(),
        inertia_sem=inertias.std(ddof=1) / np.sqrt(len(inertias)) if len(inertias) > 1 else 0,
        iters=' / '.join(f"{np.mean([r['iters'][level] for r in method_runs]):.0f}"
                         for level in range(args.levels))))
    print(f'{num_items} {name}: {method_runs}', file=sys.stderr)
  rows[1]['compile_seconds'] = sum(compile_seconds)
  return rows


def markdown_table(rows: list[dict], args: argparse.Namespace) -> str:
  lines = [
      '| items | seeds | method | time (s) | compile (s) | speed-up vs sklearn | final inertia '
      '(mean ± s.e.) | inertia ratio vs sklearn | k-means iterations per level (mean) |',
      '|' + '---|' * 9,
  ]
  reference = None
  for row in rows:
    if row['method'].startswith('scikit-learn'):
      reference = row
    compile_seconds = row.get('compile_seconds')
    lines.append(
        f"| {row['num_items']:,} | {row['num_seeds']} | {row['method']} | {row['seconds']:.2f} | "
        f"{'-' if compile_seconds is None else f'{compile_seconds:.2f}'} | "
        f"{reference['seconds'] / row['seconds']:.1f}x | "
        f"{row['inertia']:,.0f} ± {row['inertia_sem']:,.0f} | "
        f"{row['inertia'] / reference['inertia']:.4f} | {row['iters']} |")
  lines.append('')
  lines.append(f'{args.dim} dims, {args.levels} levels x {args.codes} codes, max_iter '
               f'{args.max_iter}, tol {args.tol} (same value, different rules: see the '
               f'benchmark docstring); time = median, inertia = mean over the seeds; compile '
               f'= trace + lower + XLA compile time of the warm-up call (not in time).')
  return '\n'.join(lines)


def load_average() -> str:
  return ', '.join(f'{value:.1f}' for value in os.getloadavg())


def machine_description() -> str:
  cpu_model = record.cpu_model()
  blas = sorted({f"{info.get('internal_api')} {info.get('architecture', '')}".strip()
                 for info in threadpoolctl.threadpool_info()})
  return (f"nproc {os.cpu_count()}, CPU {cpu_model}, Python {platform.python_version()}, "
          f"jax {jax.__version__} ({jax.default_backend()}), numpy {np.__version__}, "
          f"scikit-learn {sklearn.__version__}, thread pools {blas}, "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")


def append_results(path: str, table: str, command: str, machine: str, load: str) -> None:
  date = datetime.datetime.now().astimezone().isoformat(timespec='seconds')
  record.add_entry(path, RESULTS_HEADING, '\n'.join([
      f'- date: {date}', f'- machine: {machine}',
      f'- load average (1, 5, 15 min) before / after the run: {load}',
      f'- command: `{command}`', '', table]))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--sizes', type=int, nargs='+', default=[10_000, 100_000])
  parser.add_argument('--dim', type=int, default=32)
  parser.add_argument('--levels', type=int, default=3)
  parser.add_argument('--codes', type=int, default=256)
  parser.add_argument('--max_iter', type=int, default=100)
  parser.add_argument('--tol', type=float, default=1e-4)
  parser.add_argument('--seeds', type=int, nargs='+', default=[20, 5],
                      help='seeds per size (one value: the same for every size)')
  parser.add_argument('--results', default=os.path.join(os.path.dirname(__file__), 'RESULTS.md'))
  parser.add_argument('--no-append', dest='append', action='store_false')
  args = parser.parse_args()

  seeds = args.seeds * len(args.sizes) if len(args.seeds) == 1 else args.seeds
  if len(seeds) != len(args.sizes):
    parser.error(f'--seeds needs 1 or {len(args.sizes)} values, got {len(args.seeds)}')
  machine = machine_description()
  load_before = load_average()
  rows = [row for num_items, num_seeds in zip(args.sizes, seeds)
          for row in benchmark_size(num_items, num_seeds, args)]
  load = f'{load_before} / {load_average()}'
  table = markdown_table(rows, args)
  print(table)
  coretype = os.environ.get('OPENBLAS_CORETYPE')
  prefix = f'OPENBLAS_CORETYPE={coretype} ' if coretype else 'env -u OPENBLAS_CORETYPE '
  command = prefix + shlex.join(['python'] + sys.argv)
  if args.append:
    append_results(args.results, table, command, machine, load)


if __name__ == '__main__':
  main()
