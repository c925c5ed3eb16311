r"""Memory and time of one training step: Ghost's AUO against the same model without it.

  python benchmarks/auo_step_benchmark.py            # ~5 min, appends RESULTS.md
  python benchmarks/auo_step_benchmark.py --no_record --chunks 8

For the `cpu` configs of LC-Rec, Ghost w/o AUO and Ghost on MovieLens-100k, compiles the
train step `train/loop.py` runs (value_and_grad of the loss + AdamW) on a real batch and
reports XLA's temp buffer (`memory_analysis`) and the median wall time of a few steps, for
several `train.targets_per_chunk`. AUO scores every tail target's K_b distractor SIDs as
branches off the chunk's SID stream (`Transformer.branch_logits`): C·K_b branches of L − 1
tokens that read the stream's keys, so attention grows by C·K_b·(L − 1)·W·L scores, not by
packing them into the sequence (quadratic). Workdirs (data, embeddings, SIDs) are cached
under --workdir.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import record  # pylint: disable=g-import-not-at-top,wrong-import-position
from genrec_jax import config as config_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from genrec_jax import run  # pylint: disable=g-import-not-at-top,wrong-import-position
from genrec_jax.data import pipeline  # pylint: disable=g-import-not-at-top,wrong-import-position
from genrec_jax.data.load import load_dataset  # pylint: disable=g-import-not-at-top,wrong-import-position
from genrec_jax.train import loop  # pylint: disable=g-import-not-at-top,wrong-import-position
from genrec_jax.train import state as state_lib  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS = (('LC-Rec', 'configs/lcrec_ins.py', 'cpu'),
        ('Ghost w/o AUO', 'configs/ghost_ins.py', 'cpu_noauo'),
        ('Ghost', 'configs/ghost_ins.py', 'cpu'))


def measure_step(config, workdir: str, repeats: int = 3) -> dict:
  """XLA's temp bytes, the median step time and the shapes of one compiled train step."""
  dataset = load_dataset(config.data, workdir)
  method = run.build_method(config, dataset, workdir)
  tc = config.train
  tx, schedule = state_lib.make_optimizer(tc, 1000, None)
  params = method.init(jax.random.PRNGKey(0))
  state = state_lib.TrainState(step=np.int32(0), params=params, opt_state=tx.init(params))
  batch = next(pipeline.train_iterator(
      dataset, batch_size=tc.batch_size, seed=0, kind=tc.example_kind,
      targets_per_chunk=tc.targets_per_chunk,
      transform=getattr(method, 'prepare_batch', None)))
  step = jax.jit(loop.make_train_step(method, tx, schedule))
  compiled = step.lower(state, batch, jax.random.PRNGKey(1)).compile()
  jax.block_until_ready(compiled(state, batch, jax.random.PRNGKey(1)))  # warm-up
  times = []
  for i in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(compiled(state, batch, jax.random.PRNGKey(2 + i)))
    times.append(time.perf_counter() - start)
  return {'temp': compiled.memory_analysis().temp_size_in_bytes,
          'seconds': float(np.median(times)), 'width': batch['items'].shape[1],
          'sid_len': method.item_tokens.shape[1], 'batch': tc.batch_size}


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workdir', default='/tmp/genrec_auo_memory')
  parser.add_argument('--chunks', default='32,16,8', help='train.targets_per_chunk values')
  parser.add_argument('--no_record', action='store_true')
  args = parser.parse_args(argv)
  lines = ['| row | targets per chunk | batch | items per chunk | SID tokens | XLA temp (GiB) '
           '| s per step | temp vs w/o AUO | time vs w/o AUO |',
           '|---|---|---|---|---|---|---|---|---|']
  for chunk in [int(c) for c in args.chunks.split(',')]:
    base = None
    for name, path, variant in ROWS:
      config = config_lib.load_config_file(os.path.join(REPO, f'{path}:{variant}'))
      config.train.targets_per_chunk = chunk
      workdir = os.path.join(args.workdir, name.replace(' ', '_').replace('/', '_'))
      m = measure_step(config, workdir)
      base = m if name == 'Ghost w/o AUO' else base
      ratios = (f'{m["temp"] / base["temp"]:.1f}x | {m["seconds"] / base["seconds"]:.1f}x'
                if name == 'Ghost' else ' | ')
      lines.append(f'| {name} | {chunk} | {m["batch"]} | {m["width"]} | {m["sid_len"]} | '
                   f'{m["temp"] / 2**30:.2f} | {m["seconds"]:.2f} | {ratios} |')
      print(lines[-1], flush=True)
  record.publish('\n'.join(record.header() + [''] + lines),
                 os.path.join(REPO, 'benchmarks', 'RESULTS.md'),
                 'Memory and time: Ghost\'s AUO training step', args.no_record)


if __name__ == '__main__':
  main()
