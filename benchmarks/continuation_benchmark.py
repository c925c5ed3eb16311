r"""Per-prefix training of a decoder-only backbone: the prompt read once by all continuations.

  python benchmarks/continuation_benchmark.py            # ~5 min, appends RESULTS.md
  python benchmarks/continuation_benchmark.py --quick --no_record

Per-prefix training teacher-forces R continuations after each history prompt: the target's
SID (R = 1, LC-Rec), or the target's and its K_b = 5 distractors' (R = 6, Ghost's AUO).
`DecoderBackbone.continuation_logits` runs the prompt once and lets the R continuations read
its keys/values as a shared prompt (as the beam search does). The peer, written here, is what
it did before: the prompt's cache copied R times, one copy per continuation.

For the scaling study's `base` and `large` decoders (d 128 / 2 layers, d 256 / 4 layers),
batch 32, left-padded prompts of up to 300 tokens (50 items of 6 SID tokens, Ghost's SKT
length) and 6-token SIDs: the median time of value_and_grad of the continuations' NLL (round
by round, after a warm-up), XLA's temp buffer of the compiled step, and the largest logit
difference between the two (they compute the same function). The machine may be shared:
compare the ratios within one run.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import record  # pylint: disable=g-import-not-at-top,wrong-import-position
from genrec_jax.losses import target_log_probs  # pylint: disable=g-import-not-at-top,wrong-import-position
from genrec_jax.methods import backbones  # pylint: disable=g-import-not-at-top,wrong-import-position
from genrec_jax.models import transformer as transformer_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from genrec_jax.models.transformer_config import TransformerConfig  # pylint: disable=g-import-not-at-top,wrong-import-position

SIZES = {'base': (128, 512, 2, 4, 2), 'large': (256, 1024, 4, 8, 4)}  # d, ffn, layers, heads, kv
VOCAB, BATCH, PROMPT, SID_LEN = 700, 32, 300, 6


def copied_prompt_logits(backbone, params, history, inputs):
  """The peer: logits [B, R, L, V] of continuations `inputs` [B, R, L-1] after the prompt,
  with the prompt's cache copied once per continuation."""
  model, config = backbone.model, backbone.model.config
  apply = functools.partial(model.apply, {'params': params})
  hidden_states = transformer_lib.Transformer.hidden_states
  batch, num_cont, length = inputs.shape[0], inputs.shape[1], inputs.shape[2] + 1
  memory = backbone.encode(params, history, None)
  cache = transformer_lib.init_cache(config, batch, memory.mask.shape[1] + length - 1)
  context, cache = apply(jnp.zeros(memory.mask.shape, jnp.int32), None, memory.mask, cache,
                         embedded=memory.states, method=hidden_states)
  last = memory.mask.shape[1] - 1 - jnp.argmax(memory.mask[:, ::-1], axis=1)
  first = apply(jnp.take_along_axis(context, last[:, None, None], axis=1),
                method=transformer_lib.Transformer.logits)
  cache = jax.tree.map(lambda x: jnp.repeat(x, num_cont, axis=0), cache)
  flat = inputs.reshape(batch * num_cont, length - 1)
  hidden, _ = apply(flat, None, flat >= 0, cache, method=hidden_states)
  rest = apply(hidden, method=transformer_lib.Transformer.logits).reshape(
      batch, num_cont, length - 1, -1)
  first = jnp.broadcast_to(first[:, None], (batch, num_cont, 1, rest.shape[-1]))
  return jnp.concatenate([first, rest], axis=2)


def problem(size: str, num_cont: int, seed: int = 0):
  d, ffn, layers, heads, kv = SIZES[size]
  backbone = backbones.DecoderBackbone(transformer_lib.Transformer(TransformerConfig(
      vocab_size=VOCAB, hidden_size=d, intermediate_size=ffn, num_hidden_layers=layers,
      num_attention_heads=heads, num_key_value_heads=kv, tie_word_embeddings=True,
      model_type='qwen2', attention_bias=True)))
  rng = np.random.default_rng(seed)
  history = np.full((BATCH, PROMPT), -1, np.int32)
  for row, n in enumerate(rng.integers(6 * 5, PROMPT + 1, BATCH)):
    history[row, PROMPT - n:] = rng.integers(0, VOCAB, n)
  labels = jnp.asarray(rng.integers(0, VOCAB, (BATCH, num_cont, SID_LEN)), jnp.int32)
  params = nn.unbox(backbone.init(jax.random.PRNGKey(seed)))
  return backbone, params, jnp.asarray(history), labels


def rows(sizes, reps: int) -> list[str]:
  lines = ['| decoder | continuations R | shared: s per step | copied: s per step | '
           'copied / shared | shared: XLA temp (MiB) | copied: XLA temp (MiB) | max abs '
           'logit difference |', '|---|---|---|---|---|---|---|---|']
  for size in sizes:
    for num_cont in (1, 6):
      backbone, params, history, labels = problem(size, num_cont)
      logits = {
          'shared': lambda p: backbone.continuation_logits(p, history, labels[..., :-1], None),
          'copied': lambda p: copied_prompt_logits(backbone, p, history, labels[..., :-1])}
      steps = {name: jax.jit(jax.value_and_grad(
          lambda p, f=f: -target_log_probs(f(p), labels).sum())) for name, f in logits.items()}
      temp = {name: step.lower(params).compile().memory_analysis().temp_size_in_bytes / 2**20
              for name, step in steps.items()}
      difference = float(jnp.abs(jax.jit(logits['shared'])(params)
                                 - jax.jit(logits['copied'])(params)).max())
      for step in steps.values():
        jax.block_until_ready(step(params))
      times = {name: [] for name in steps}
      for _ in range(reps):
        for name, step in steps.items():
          start = time.perf_counter()
          jax.block_until_ready(step(params))
          times[name].append(time.perf_counter() - start)
      shared, copied = (statistics.median(times[n]) for n in ('shared', 'copied'))
      lines.append(f'| {size} | {num_cont} | {shared:.3f} | {copied:.3f} | '
                   f'{copied / shared:.2f}x | {temp["shared"]:.0f} | {temp["copied"]:.0f} | '
                   f'{difference:.1e} |')
      print(lines[-1], flush=True)
  return lines


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--reps', type=int, default=5)
  parser.add_argument('--quick', action='store_true', help='the base decoder, 2 repetitions')
  parser.add_argument('--no_record', action='store_true')
  args = parser.parse_args()
  text = '\n'.join(rows(('base',) if args.quick else ('base', 'large'),
                        2 if args.quick else args.reps))
  entry = '\n'.join(record.header() + ['', text])
  record.publish(entry, os.path.join(os.path.dirname(__file__), 'RESULTS.md'),
                 'Per-prefix continuations: the prompt shared, not copied', args.no_record)


if __name__ == '__main__':
  main()
