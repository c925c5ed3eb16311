r"""SimGR's costs against the generative rows' on the same backbone.

  python benchmarks/simgr_benchmark.py                 # appends to benchmarks/RESULTS.md
  python benchmarks/simgr_benchmark.py --quick --no_record

Three measurements, on LC-Rec's `cpu` decoder (Qwen2-shaped, d=128, 2 layers, from scratch)
over random unique 4-token SIDs (4 levels x 32 codes, a 1,349-item catalogue as
MovieLens-100k's) and histories of 20 items (80 tokens), batch 32:

  1. training step (loss + gradients + nothing else, jitted): LC-Rec per prefix (the SID NLL),
     SimGR without SID heads, SimGR with its AR and parallel heads trained jointly (one causal
     pass over history + SID);
  2. the item-level softmax alone (loss + gradients over 256 queries and the item table, d
     128) for catalogues of 1,349 to 1,000,000 items: chunked
     (losses.item_softmax_cross_entropy, 2,048 items per chunk) against the full [B, I]
     logits, time and XLA scratch memory (compiled.memory_analysis().temp_size_in_bytes;
     the table's gradient is an output, not scratch);
  3. users/s of SimGR's exact top-20 (similarity_topk over the catalogue) against the trie
     beam search of the same backbone (beam 20, k 20).

Timing: one warm-up per program, then the median of --reps repetitions run round by round
(every program once per round) so that load from other jobs hits all alike. The machine is
shared: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import record  # pylint: disable=g-import-not-at-top
from genrec_jax.decode.sid_distribution import parallel_classes  # pylint: disable=g-import-not-at-top
from genrec_jax.losses import item_softmax_cross_entropy  # pylint: disable=g-import-not-at-top
from genrec_jax.losses import target_log_probs  # pylint: disable=g-import-not-at-top
from genrec_jax.methods import backbones  # pylint: disable=g-import-not-at-top
from genrec_jax.methods import simgr  # pylint: disable=g-import-not-at-top
from genrec_jax.methods.generative import GenerativeRecommender  # pylint: disable=g-import-not-at-top
from genrec_jax.models import transformer as transformer_lib  # pylint: disable=g-import-not-at-top
from genrec_jax.models.transformer_config import TransformerConfig  # pylint: disable=g-import-not-at-top
from genrec_jax.tokenize.sid_table import SIDTable  # pylint: disable=g-import-not-at-top

LEVELS, CODES, HISTORY = 4, 32, 20


def random_sids(num_items: int, seed: int = 0) -> SIDTable:
  rng = np.random.default_rng(seed)
  codes = set()
  while len(codes) < num_items:
    codes.add(tuple(rng.integers(0, CODES, LEVELS)))
  codes = np.array(sorted(codes), np.int32)[rng.permutation(num_items)]
  return SIDTable(codes=codes, level_sizes=(CODES,) * LEVELS,
                  ends_with_eos=np.zeros(num_items, bool),
                  level_names=tuple('abcd'[:LEVELS]))


def methods_on_one_backbone(num_items: int):
  sids = random_sids(num_items)
  model = transformer_lib.Transformer(TransformerConfig(
      vocab_size=256, hidden_size=128, intermediate_size=512, num_hidden_layers=2,
      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
      model_type='qwen2', attention_bias=True))
  generator = GenerativeRecommender(backbones.DecoderBackbone(model), sids, num_items,
                                    max_history=HISTORY, beam_size=20, token_base=0)
  classes = parallel_classes(sids.item_tokens(), sids.vocab_size)
  pure = simgr.SimGR(generator, eos_token=None, num_sid_tokens=sids.vocab_size,
                     terms=[simgr.ItemSoftmaxCE(1.0, 2048, sampled=False)])
  joint = simgr.SimGR(generator, eos_token=None, num_sid_tokens=sids.vocab_size,
                      terms=[simgr.ItemSoftmaxCE(1.0, 2048, sampled=False),
                             simgr.SIDNLL(1.0), simgr.ParallelNLL(1.0, classes)])
  return generator, pure, joint


def batch_of(num_items: int, batch: int, seed: int = 1):
  rng = np.random.default_rng(seed)
  return {'history': jnp.asarray(rng.integers(0, num_items, (batch, HISTORY)), jnp.int32),
          'target': jnp.asarray(rng.integers(0, num_items, batch), jnp.int32)}


def median_times(programs: dict, reps: int) -> dict:
  """{name: median seconds} of zero-argument callables, run round by round."""
  for fn in programs.values():
    jax.block_until_ready(fn())
  times = {name: [] for name in programs}
  for _ in range(reps):
    for name, fn in programs.items():
      start = time.perf_counter()
      jax.block_until_ready(fn())
      times[name].append(time.perf_counter() - start)
  return {name: statistics.median(t) for name, t in times.items()}


def step_benchmark(reps: int) -> list[str]:
  generator, pure, joint = methods_on_one_backbone(1349)
  batch = batch_of(1349, 32)
  params = nn.unbox(jax.jit(joint.init)(jax.random.PRNGKey(0)))

  def grads(loss_fn, p):
    return jax.jit(jax.grad(lambda q: loss_fn(q, batch, None)[0]))

  lcrec_step = grads(generator.loss_fn, params['backbone'])
  pure_step, joint_step = grads(pure.loss_fn, params), grads(joint.loss_fn, params)
  times = median_times({'LC-Rec (per prefix): SID NLL': lambda: lcrec_step(params['backbone']),
                        'SimGR, no SID heads': lambda: pure_step(params),
                        'SimGR, AR + parallel heads jointly': lambda: joint_step(params)},
                       reps)
  base = times['LC-Rec (per prefix): SID NLL']
  lines = ['| training step (batch 32, 1,349 items) | s per step | vs LC-Rec |', '|---|---|---|']
  lines += [f'| {name} | {t:.3f} | {t / base:.2f}x |' for name, t in times.items()]
  return lines


def softmax_benchmark(sizes, reps: int, batch: int = 256, chunk: int = 2048) -> list[str]:
  lines = [f'| catalogue (batch {batch}, d 128) | chunked: s | chunked: XLA temp (MiB) | '
           'full [B, I]: s | full: XLA temp (MiB) |', '|---|---|---|---|---|']
  rng = np.random.default_rng(0)
  for size in sizes:
    q = jnp.asarray(rng.normal(size=(batch, 128)), jnp.float32)
    t = jnp.asarray(rng.normal(size=(size, 128)), jnp.float32)
    y = jnp.asarray(rng.integers(0, size, batch))
    chunked = jax.jit(jax.grad(lambda q, t: item_softmax_cross_entropy(q, t, y, chunk).mean(),
                               argnums=(0, 1)))
    full = jax.jit(jax.grad(lambda q, t: -target_log_probs(q @ t.T, y).mean(), argnums=(0, 1)))
    mem = {name: fn.lower(q, t).compile().memory_analysis().temp_size_in_bytes / 2**20
           for name, fn in (('chunked', chunked), ('full', full))}
    times = median_times({'chunked': lambda: chunked(q, t), 'full': lambda: full(q, t)}, reps)
    lines.append(f'| {size:,} | {times["chunked"]:.4f} | {mem["chunked"]:.1f} | '
                 f'{times["full"]:.4f} | {mem["full"]:.1f} |')
  return lines


def topk_benchmark(batches, reps: int) -> list[str]:
  _, pure, _ = methods_on_one_backbone(1349)
  params = nn.unbox(jax.jit(pure.init)(jax.random.PRNGKey(0)))
  lines = ['| users per batch | SimGR exact top-20: users/s | beam 20 (same backbone): '
           'users/s | ratio |', '|---|---|---|---|']
  for size in batches:
    batch = batch_of(1349, size)
    exact = lambda: pure.predict_topk(params, batch, 20)
    beam = lambda: pure.beam_topk(params, batch, 20, 20)
    times = median_times({'exact': exact, 'beam': beam}, reps)
    lines.append(f'| {size} | {size / times["exact"]:,.0f} | {size / times["beam"]:,.0f} | '
                 f'{times["beam"] / times["exact"]:.1f}x |')
  return lines


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--reps', type=int, default=5)
  parser.add_argument('--quick', action='store_true', help='small sizes, 2 repetitions')
  parser.add_argument('--no_record', action='store_true')
  args = parser.parse_args()
  reps = 2 if args.quick else args.reps
  sizes = (1349, 20000) if args.quick else (1349, 100_000, 1_000_000)
  batches = (64,) if args.quick else (64, 256)
  parts = [step_benchmark(reps), softmax_benchmark(sizes, reps), topk_benchmark(batches, reps)]
  text = '\n\n'.join('\n'.join(p) for p in parts)
  record.publish('\n'.join(record.header() + ['', text]),
                 os.path.join(os.path.dirname(__file__), 'RESULTS.md'),
                 'SimGR: chunked item softmax, training step, exact top-K vs beam', args.no_record)


if __name__ == '__main__':
  main()
