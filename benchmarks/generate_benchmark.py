r"""SmolLM2-135M-Instruct (GGUF) on this machine: sampling throughput against the model-forward
floor, item-text embedding throughput on MovieLens-100k, peak memory.

  python benchmarks/generate_benchmark.py                    # appends to benchmarks/RESULTS.md
  python benchmarks/generate_benchmark.py --quick --no_record   # smoke test

Generation: the chat prompt of one question, left-padded to 64 tokens, repeated over the
batch; `sampling.generate` draws `--new_tokens` tokens per row with GenAIR's settings
(temperature 0.6, top-p 0.9) and with greedy decoding, no EOS stop, so every row generates
the same number of tokens. Floor: the same prefill and the same number of cached decode steps
(`transformer.prefill` + `decode_step` in a fori_loop, a fixed token fed back) in one jitted
program, without any logits processing: what the model forward alone costs. Both are
compiled first (compile time reported apart), then timed round by round (sampler, greedy,
floor) and the median of --reps is kept, so load from other jobs hits all alike.

Item embeddings: MovieLens-100k's 1,349 items rendered as the `movielens` template (title,
year, genres), mean-pooled last hidden states in batches of 64 (embed.source='llm'); one
pass, the compiles of its few length buckets included, and the tokens per item.

Memory: the process's peak resident set (ru_maxrss) after each phase, and XLA's temporary
buffers of the compiled generate at each batch size.
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import statistics
import sys
import time

import numpy as np

import record  # benchmarks/record.py (scripts run from this folder's path)

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:  # run as a script from anywhere
  sys.path.insert(0, _REPO)

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position

from genrec_jax import config as config_lib  # pylint: disable=wrong-import-position
from genrec_jax.data.load import load_dataset  # pylint: disable=wrong-import-position
from genrec_jax.decode import sampling  # pylint: disable=wrong-import-position
from genrec_jax.embed import cache  # pylint: disable=wrong-import-position
from genrec_jax.embed import encode  # pylint: disable=wrong-import-position
from genrec_jax.models import pretrained  # pylint: disable=wrong-import-position
from genrec_jax.models import transformer  # pylint: disable=wrong-import-position

RESULTS_HEADING = 'Generation and LLM item embeddings: SmolLM2-135M-Instruct (GGUF)'
QUESTION = 'Describe the movie Toy Story (1995) in one sentence.'


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--model', default='smollm2')
  p.add_argument('--batches', type=int, nargs='+', default=[1, 16, 64])
  p.add_argument('--new_tokens', type=int, default=32)
  p.add_argument('--prompt_len', type=int, default=64, help='left-padded prompt length')
  p.add_argument('--reps', type=int, default=3)
  p.add_argument('--embed_items', type=int, default=0, help='0: all of MovieLens-100k')
  p.add_argument('--quick', action='store_true', help='tiny smoke-test settings')
  p.add_argument('--no_record', action='store_true', help='do not append to RESULTS.md')
  p.add_argument('--results', default=os.path.join(_REPO, 'benchmarks', 'RESULTS.md'))
  args = p.parse_args(argv)
  if args.quick:
    args.batches, args.new_tokens, args.reps, args.embed_items = [1, 2], 4, 1, 16
  return args


def peak_rss_gib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


@functools.partial(jax.jit, static_argnums=(0, 4))
def forward_floor(model, params, tokens, mask, steps: int):
  """Prefill + `steps` cached decode steps, a fixed token fed back: the forward alone."""
  logits, cache_ = transformer.prefill(model, params, tokens, mask, tokens.shape[1] + steps)
  def step(_, carry):
    logits, cache_ = carry
    return transformer.decode_step(model, params, jnp.zeros(tokens.shape[0], jnp.int32),
                                   cache_)
  return jax.lax.fori_loop(0, steps, step, (logits, cache_))[0]


def timed(fn) -> float:
  start = time.perf_counter()
  jax.block_until_ready(fn())
  return time.perf_counter() - start


def generation_rows(args, model, network, prompt_ids):
  """One row per (batch, kind): seconds (median), tokens/s, vs floor, XLA temp GiB."""
  rows = []
  for batch in args.batches:
    tokens = np.zeros((batch, args.prompt_len), np.int32)
    mask = np.zeros((batch, args.prompt_len), bool)
    tokens[:, -len(prompt_ids):], mask[:, -len(prompt_ids):] = prompt_ids, True
    configs = {
        'sample (T 0.6, top-p 0.9)': sampling.SamplingConfig(
            max_new_tokens=args.new_tokens, temperature=0.6, top_p=0.9),
        'greedy': sampling.SamplingConfig(max_new_tokens=args.new_tokens, temperature=0),
    }
    runs = {name: functools.partial(sampling.generate, network, model.params, tokens, mask,
                                    jax.random.key(0), config)
            for name, config in configs.items()}
    runs['forward floor'] = functools.partial(forward_floor, network, model.params, tokens,
                                              mask, args.new_tokens)
    compile_s, temp = {}, {}
    for name, config in configs.items():
      lowered = sampling.generate.lower(network, model.params, tokens, mask,
                                        jax.random.key(0), config)
      start = time.perf_counter()
      compiled = lowered.compile()
      compile_s[name] = time.perf_counter() - start
      temp[name] = compiled.memory_analysis().temp_size_in_bytes / 2**30
    start = time.perf_counter()
    compiled = forward_floor.lower(network, model.params, tokens, mask,
                                   args.new_tokens).compile()
    compile_s['forward floor'] = time.perf_counter() - start
    temp['forward floor'] = compiled.memory_analysis().temp_size_in_bytes / 2**30
    for fn in runs.values():  # warm-up (and the first call's dispatch caches)
      timed(fn)
    times = {name: [] for name in runs}
    for _ in range(args.reps):
      for name, fn in runs.items():
        times[name].append(timed(fn))
    floor = statistics.median(times['forward floor'])
    for name in runs:
      seconds = statistics.median(times[name])
      rows.append(dict(batch=batch, kind=name, seconds=seconds,
                       tokens_per_s=batch * args.new_tokens / seconds,
                       vs_floor=seconds / floor, compile_s=compile_s[name],
                       temp_gib=temp[name]))
      print(f'batch {batch:3d} {name:26s} {seconds:7.2f} s  '
            f'{rows[-1]["tokens_per_s"]:8.1f} tok/s  x{rows[-1]["vs_floor"]:.2f} floor  '
            f'compile {compile_s[name]:.1f} s  temp {temp[name]:.2f} GiB', flush=True)
  return rows


def embedding_row(args, model, network):
  config = config_lib.load_config_file('configs/lcrec_ins.py:cpu')
  dataset = load_dataset(config.data)
  texts = cache.render_item_texts(dataset, 'movielens', config.embed.max_chars_per_field)
  if args.embed_items:
    texts = texts[:args.embed_items]
  lengths = [len(model.encode(text)) for text in texts]
  hidden = jax.jit(lambda p, ids, mask: network.apply(
      {'params': p}, ids, None, mask, method=transformer.Transformer.hidden_states)[0])
  start = time.perf_counter()
  vectors = encode.encode_with_llm(texts, model, functools.partial(hidden, model.params),
                                   batch_size=64, max_length=128, pad_id=model.pad_id,
                                   normalize=False)
  seconds = time.perf_counter() - start
  assert vectors.shape == (len(texts), model.config.hidden_size)
  row = dict(items=len(texts), seconds=seconds, items_per_s=len(texts) / seconds,
             tokens_mean=float(np.mean(lengths)), tokens_max=int(np.max(lengths)))
  print(f'item embeddings: {row}', flush=True)
  return row


def render(args, info, load_s, gen_rows, embed_row, rss, loads) -> str:
  lines = record.header(
      f'{info}; load average {loads[0]} at the start, {loads[1]} at the end',
      f'model: {args.model} ({load_s:.1f} s to read, dequantise and tokenizer); prompt '
      f'left-padded to {args.prompt_len} tokens, {args.new_tokens} new tokens per row, '
      f'median of {args.reps}')
  lines += ['', '| batch | kind | s | tokens/s | x floor | compile s | XLA temp GiB |',
            '|---|---|---|---|---|---|---|']
  for r in gen_rows:
    lines.append(f'| {r["batch"]} | {r["kind"]} | {r["seconds"]:.2f} | '
                 f'{r["tokens_per_s"]:.1f} | {r["vs_floor"]:.2f} | {r["compile_s"]:.1f} | '
                 f'{r["temp_gib"]:.2f} |')
  lines += ['', f'Item embeddings (MovieLens-100k, movielens template, batch 64): '
            f'{embed_row["items"]:,} items in {embed_row["seconds"]:.1f} s = '
            f'{embed_row["items_per_s"]:.1f} items/s (one pass, bucket compiles included; '
            f'{embed_row["tokens_mean"]:.1f} tokens per item on average, at most '
            f'{embed_row["tokens_max"]}).',
            f'Peak RSS: {rss["load"]:.2f} GiB after loading, {rss["generate"]:.2f} GiB after '
            f'generation, {rss["embed"]:.2f} GiB after the embeddings.']
  return '\n'.join(lines)


def main(argv=None) -> None:
  args = parse_args(argv)
  info = (f'nproc {len(os.sched_getaffinity(0))}, {record.cpu_model()}, jax {jax.__version__}, '
          f'{jax.devices()[0].platform}')
  loads = [record.load_str()]
  print(f'machine: {info}  load avg {loads[0]}', flush=True)
  start = time.perf_counter()
  model = pretrained.load(args.model)
  load_s = time.perf_counter() - start
  rss = {'load': peak_rss_gib()}
  network = transformer.Transformer(model.config)
  prompt_ids = model.encode(model.chat_template([{'role': 'user', 'content': QUESTION}]))
  gen_rows = generation_rows(args, model, network, prompt_ids)
  rss['generate'] = peak_rss_gib()
  embed_row = embedding_row(args, model, network)
  rss['embed'] = peak_rss_gib()
  loads.append(record.load_str())
  report = render(args, info, load_s, gen_rows, embed_row, rss, loads)
  record.publish(report, args.results, RESULTS_HEADING, args.no_record)


if __name__ == '__main__':
  main()
