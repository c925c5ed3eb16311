r"""Trie beam search (JAX, this codebase) vs Hugging Face `generate` (PyTorch) on one model.

  python benchmarks/decode_benchmark.py            # full run, appends to benchmarks/RESULTS.md
  taskset -c 1 python benchmarks/decode_benchmark.py --batches 64   # both sides on one core
  python benchmarks/decode_benchmark.py --quick --no_record   # smoke test

Needs PyTorch for the baseline (benchmark only): `pip install torch==2.13.0` takes the CPU
build that lies on this machine's disk; never imported by genrec_jax or the tests.

Both sides load ONE Hugging Face checkpoint written here (a tiny Qwen2 with random weights):
PyTorch through `transformers.Qwen2ForCausalLM.from_pretrained`, Flax through
`hf_loading.load_checkpoint`. The catalogue has `num_items` items with unique random 4-token
semantic IDs (4 levels x 256 codes appended to a small base vocabulary); each user's prompt is
BOS + two fixed tokens, the SIDs of 16-20 history items and a two-token "Response:" separator,
left padded to the longest prompt (20 items: 85 tokens).

Ours: one jitted program per (beam, batch): `transformer.prefill_shared` of the users'
prompts (their keys/values kept once per user), then `beam_search` with
`transformer.decode_step`, whose per-beam cache holds only the generated tokens. Baseline, as
LC-Rec / LETTER decode:
`model.generate(num_beams=K, num_return_sequences=K, prefix_allowed_tokens_fn=...,
max_new_tokens=4, output_scores=True, return_dict_in_generate=True, early_stopping=True)` with a
Python prefix dict (prefix tuple -> allowed next tokens) found after the separator.

Why max_new_tokens=4 and no forced EOS: every SID has exactly 4 tokens. HF ranks finished
hypotheses by sum_logprobs / generated_len ** length_penalty; with equal lengths that is the
sum of log-probabilities divided by the same 4 for every item, so the ranking is the one our
search uses. At max_length every top-K candidate of the last step is finished at once, and no
candidate finishes earlier, so HF's 2K-candidate bookkeeping reduces to plain top-K beam
search. Forcing EOS after the 4th token (as LC-Rec's prefix fn does) would add a 5th
model call to HF and a log p(EOS | SID) term to every score that our 4-token trie does not
have: the runs would no longer do the same work or rank by the same quantity.

Timing: a warm-up first (JAX compile time is measured separately with .lower().compile()),
then the median of several repetitions, run round by round (ours, floors, prefill, HF) so that
load from other jobs hits both sides alike. HF gets the faster of 1 and all torch threads,
probed per row after its warm-up (on a loaded machine OpenMP with 2 threads can be several
times slower than 1). The forward floor is the same prefill plus 3 cached decode steps on
B x K rows in one jitted program, without search logic (3 steps are what a 4-token search
runs: the prefill yields token 1's logits); the L=4 variant the issue named (one more decode
step) is reported too. Note that HF's generate expands the prompts to B x K rows BEFORE its
prefill, so it prefills every prompt K times; we prefill it once per user.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from typing import Any

import numpy as np

import record  # benchmarks/record.py (scripts run from this folder's path)

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:  # run as a script from anywhere
  sys.path.insert(0, _REPO)

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position

from genrec_jax.decode.beam_search import beam_search  # pylint: disable=wrong-import-position
from genrec_jax.models import hf_loading  # pylint: disable=wrong-import-position
from genrec_jax.models import transformer  # pylint: disable=wrong-import-position
from genrec_jax.models.transformer_config import TransformerConfig  # pylint: disable=wrong-import-position
from genrec_jax.tokenize.trie import build_trie  # pylint: disable=wrong-import-position

SID_LEN = 4  # tokens per semantic ID
PAD = 0  # base-vocabulary ids used by the prompt template
BOS = 1
PROMPT_HEAD = (5, 6)  # "history:"
SEPARATOR = (7, 8)  # "Response:"; the prefix fn finds the generated part after it
RESULTS_HEADING = 'Decoding: trie beam search vs Hugging Face generate'


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--num_items', type=int, default=10_000)
  p.add_argument('--codes', type=int, default=256, help='codes per SID level')
  p.add_argument('--base_vocab', type=int, default=1000)
  p.add_argument('--min_history', type=int, default=16)
  p.add_argument('--max_history', type=int, default=20)
  p.add_argument('--hidden', type=int, default=256)
  p.add_argument('--layers', type=int, default=4)
  p.add_argument('--heads', type=int, default=4)
  p.add_argument('--kv_heads', type=int, default=2)
  p.add_argument('--intermediate', type=int, default=1024)
  p.add_argument('--logit_scale', type=float, default=4.0,
                 help='std of the random logits; a peaked, trained-like distribution')
  p.add_argument('--beams', type=int, nargs='+', default=[10, 20])
  p.add_argument('--batches', type=int, nargs='+', default=[1, 16, 64])
  p.add_argument('--reps', type=int, default=5, help='timed repetitions, ours')
  p.add_argument('--hf_reps', type=int, default=3, help='timed repetitions, Hugging Face')
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--torch_threads', type=int, default=0,
                 help='0: per row, the faster of 1 and all cores (probed after the warm-up)')
  p.add_argument('--quick', action='store_true', help='tiny smoke-test settings')
  p.add_argument('--cache_probe', action='store_true',
                 help='only time one decode step and one beam reorder on max(beams) x '
                 'max(batches) rows, with a per-beam prompt cache vs a generated-tokens-only '
                 'cache (why decode costs what it does)')
  p.add_argument('--no_record', action='store_true', help='do not append to RESULTS.md')
  p.add_argument('--results', default=os.path.join(_REPO, 'benchmarks', 'RESULTS.md'))
  args = p.parse_args(argv)
  if args.quick:
    args.num_items, args.beams, args.batches, args.reps, args.hf_reps = 2000, [4], [1, 3], 2, 1
  return args


# --------------------------------------------------------------------------------------
# Data and checkpoint.
# --------------------------------------------------------------------------------------


def make_sids(rng: np.random.Generator, num_items: int, codes: int,
              base_vocab: int) -> np.ndarray:
  """Unique random SIDs as token ids [I, 4]; level l's code c is base_vocab + l * codes + c."""
  flat = rng.choice(codes**SID_LEN, size=num_items, replace=False)
  digits = np.stack(np.unravel_index(flat, (codes,) * SID_LEN), axis=1)  # [I, 4]
  return (base_vocab + np.arange(SID_LEN) * codes + digits).astype(np.int64)


def make_prompts(rng: np.random.Generator, sids: np.ndarray, num_users: int,
                 min_history: int, max_history: int) -> tuple[np.ndarray, np.ndarray]:
  """Left-padded prompts: (tokens [U, T] int64 with PAD, mask [U, T] bool)."""
  rows = []
  for _ in range(num_users):
    history = rng.choice(len(sids), size=rng.integers(min_history, max_history + 1),
                         replace=False)
    rows.append([BOS, *PROMPT_HEAD, *sids[history].reshape(-1).tolist(), *SEPARATOR])
  length = max(len(r) for r in rows)
  tokens = np.full((num_users, length), PAD, np.int64)
  mask = np.zeros((num_users, length), bool)
  for u, row in enumerate(rows):
    tokens[u, length - len(row):], mask[u, length - len(row):] = row, True
  return tokens, mask


def write_checkpoint(directory: str, args: argparse.Namespace, vocab: int, eos: int) -> None:
  """A Qwen2 HF checkpoint with random float32 weights (config.json + model.safetensors).

  Weights are scaled so every sublayer adds an O(1) update and the logits have std
  `logit_scale`: HF's N(0, 0.02) init gives near-uniform next-token distributions, where
  thousands of items tie to float precision and no ranking comparison would mean anything.
  """
  import safetensors.numpy  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  transformers.Qwen2Config(
      vocab_size=vocab, hidden_size=args.hidden, intermediate_size=args.intermediate,
      num_hidden_layers=args.layers, num_attention_heads=args.heads,
      num_key_value_heads=args.kv_heads, max_position_embeddings=512, rope_theta=10000.0,
      rms_norm_eps=1e-6, tie_word_embeddings=False, bos_token_id=BOS, eos_token_id=eos,
      pad_token_id=PAD).save_pretrained(directory)
  rng = np.random.default_rng(args.seed + 1)
  d, f = args.hidden, args.intermediate
  head_dim = d // args.heads
  q, kv = args.heads * head_dim, args.kv_heads * head_dim
  dense = lambda out, inp: rng.normal(0, inp**-0.5, (out, inp))
  weights = {
      'model.embed_tokens.weight': rng.normal(0, 1.0, (vocab, d)),
      'model.norm.weight': 1 + 0.1 * rng.normal(size=d),
      'lm_head.weight': rng.normal(0, args.logit_scale * d**-0.5, (vocab, d)),
  }
  for i in range(args.layers):
    pre = f'model.layers.{i}.'
    weights.update({
        pre + 'input_layernorm.weight': 1 + 0.1 * rng.normal(size=d),
        pre + 'post_attention_layernorm.weight': 1 + 0.1 * rng.normal(size=d),
        pre + 'self_attn.q_proj.weight': dense(q, d),
        pre + 'self_attn.q_proj.bias': 0.1 * rng.normal(size=q),
        pre + 'self_attn.k_proj.weight': dense(kv, d),
        pre + 'self_attn.k_proj.bias': 0.1 * rng.normal(size=kv),
        pre + 'self_attn.v_proj.weight': dense(kv, d),
        pre + 'self_attn.v_proj.bias': 0.1 * rng.normal(size=kv),
        pre + 'self_attn.o_proj.weight': dense(d, q),
        pre + 'mlp.gate_proj.weight': dense(f, d),
        pre + 'mlp.up_proj.weight': dense(f, d),
        pre + 'mlp.down_proj.weight': dense(d, f),
    })
  weights = {k: np.ascontiguousarray(v, np.float32) for k, v in weights.items()}
  safetensors.numpy.save_file(weights, os.path.join(directory, 'model.safetensors'))


# --------------------------------------------------------------------------------------
# Ours: jitted prefill + trie beam search, and the forward floor.
# --------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=('model', 'beam_size', 'max_len'))
def recommend(params, trie, tokens, mask, *, model, beam_size, max_len):
  """(items [B, K], scores [B, K]): prefill once per user, then the trie beam search."""
  first_logits, cache, prompt = transformer.prefill_shared(model, params, tokens, mask,
                                                           max_len - tokens.shape[1])

  def tokens_to_logits(step_tokens, step_cache, step):
    del step  # the KV cache knows the position
    return transformer.decode_step(model, params, step_tokens, step_cache, prompt)

  return beam_search(tokens_to_logits, cache, trie, batch_size=tokens.shape[0],
                     beam_size=beam_size, first_logits=first_logits)


@functools.partial(jax.jit, static_argnames=('model', 'beam_size', 'max_len', 'num_steps'))
def forward_floor(params, tokens, mask, *, model, beam_size, max_len, num_steps):
  """The model work of a search without the search: prefill + num_steps decode steps."""
  logits, cache, prompt = transformer.prefill_shared(model, params, tokens, mask,
                                                     max_len - tokens.shape[1])
  cache = jax.tree.map(lambda x: jnp.repeat(x, beam_size, axis=0), cache)
  next_tokens = jnp.repeat(jnp.argmax(logits, axis=-1), beam_size)
  for _ in range(num_steps):
    logits, cache = transformer.decode_step(model, params, next_tokens, cache, prompt)
    next_tokens = jnp.argmax(logits, axis=-1)  # a data dependence keeps the steps serial
  return logits


@functools.partial(jax.jit, static_argnames=('model', 'max_len'))
def prefill_only(params, tokens, mask, *, model, max_len):
  return transformer.prefill(model, params, tokens, mask, max_len)[0]


def _block(tree):
  return jax.tree.map(lambda x: x.block_until_ready(), tree)


# --------------------------------------------------------------------------------------
# Baseline: Hugging Face generate with a Python prefix dict.
# --------------------------------------------------------------------------------------


def make_prefix_allowed_tokens_fn(sids: np.ndarray):
  """LC-Rec-style prefix_allowed_tokens_fn over a prefix dict.

  As in LC-Rec's get_prefix_allowed_tokens_fn, the generated part is found by scanning the
  sequence backwards for the "Response:" separator; the allowed tokens then come from a dict
  prefix tuple -> list of next tokens (LC-Rec keys its sets by position only; the full
  prefix keeps every output a real item, as our trie does). Lists are built once, up front.
  """
  allowed: dict[tuple[int, ...], set[int]] = {}
  for row in sids.tolist():
    for t in range(SID_LEN):
      allowed.setdefault(tuple(row[:t]), set()).add(row[t])
  allowed_lists = {prefix: sorted(tokens) for prefix, tokens in allowed.items()}
  sep_reversed = list(SEPARATOR[::-1])
  sep_len = len(SEPARATOR)

  def prefix_allowed_tokens_fn(batch_id, sentence):
    del batch_id
    sentence = sentence.tolist()
    reversed_sent = sentence[::-1]
    for i in range(len(reversed_sent)):
      if reversed_sent[i:i + sep_len] == sep_reversed:
        return allowed_lists[tuple(sentence[len(sentence) - i:])]
    raise ValueError('separator not found')

  return prefix_allowed_tokens_fn


class HFProfile:
  """Wall time inside the model forward (prefill / decode) and the prefix processor."""

  def __init__(self, model):
    import transformers  # pylint: disable=g-import-not-at-top
    self.reset()
    self._start = None
    self._call_forwards = 0
    model.register_forward_pre_hook(self._pre)
    model.register_forward_hook(self._post)
    processor_cls = transformers.generation.logits_process.PrefixConstrainedLogitsProcessor
    original = processor_cls.__call__
    profile = self

    def timed_call(processor, input_ids, scores):  # profiling wrapper, benchmark only
      start = time.perf_counter()
      out = original(processor, input_ids, scores)
      profile.processor += time.perf_counter() - start
      return out

    processor_cls.__call__ = timed_call

  def reset(self):
    self.calls, self.forwards, self.prefill, self.decode, self.processor = 0, 0, 0.0, 0.0, 0.0

  def begin_call(self):
    """Marks a new generate call: its first forward is the prefill."""
    self.calls += 1
    self._call_forwards = 0

  def _pre(self, module, inputs):
    del module, inputs
    self._start = time.perf_counter()

  def _post(self, module, inputs, outputs):
    del module, inputs, outputs
    elapsed = time.perf_counter() - self._start
    if self._call_forwards == 0:
      self.prefill += elapsed
    else:
      self.decode += elapsed
    self._call_forwards += 1
    self.forwards += 1

  def per_call(self) -> dict[str, float]:
    calls = max(self.calls, 1)
    return {'forwards': self.forwards / calls, 'prefill': self.prefill / calls,
            'decode': self.decode / calls, 'processor': self.processor / calls}


def cache_probe(config: TransformerConfig, params: Any, rows: int,
                prompt_len: int, reps: int) -> list[dict[str, float]]:
  """Times one decode_step and one beam reorder (row gather) for two cache sizes.

  T + 4 slots per row is what the search carries today (each beam row holds a copy of its
  user's prompt keys/values); 4 slots is what a shared-prefix layout would give each beam
  (prompt KV once per user, per-beam KV only for the generated tokens).
  """
  model = transformer.Transformer(config)
  step = jax.jit(transformer.decode_step, static_argnums=0)
  reorder = jax.jit(lambda cache, idx: jax.tree.map(lambda x: x[idx], cache))
  tokens = jnp.full((rows,), PAD, jnp.int32)
  parents = jnp.asarray(np.random.default_rng(0).permutation(rows))
  out = []
  for slots in (prompt_len + SID_LEN, SID_LEN):
    cache = transformer.init_cache(config, rows, slots)
    # Every slot but the one written counts as a real key; the write stays in range.
    cache['mask'] = jnp.ones_like(cache['mask']).at[:, -1].set(False)
    cache['index'] = jnp.full((rows,), slots - 1, jnp.int32)
    calls = {'step': lambda c=cache: step(model, params, tokens, c),
             'reorder': lambda c=cache: reorder(c, parents)}
    times = {name: [] for name in calls}
    for fn in calls.values():
      _block(fn())
    for _ in range(reps):
      for name, fn in calls.items():
        start = time.perf_counter()
        _block(fn())
        times[name].append(time.perf_counter() - start)
    kv_bytes = sum(x.nbytes for layer in cache['layers'] for x in layer.values())
    out.append(dict(slots=slots, mb=kv_bytes / 2**20,
                    step_ms=1e3 * statistics.median(times['step']),
                    reorder_ms=1e3 * statistics.median(times['reorder'])))
    print(json.dumps(out[-1]), flush=True)
  return out


# --------------------------------------------------------------------------------------
# Main.
# --------------------------------------------------------------------------------------


def machine_info() -> dict[str, str]:
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  cpu = record.cpu_model()
  usable = sorted(os.sched_getaffinity(0))
  return {'nproc': str(len(usable)), 'cpus': str(os.cpu_count()),
          'affinity': ','.join(map(str, usable)), 'cpu': cpu, 'jax': jax.__version__,
          'torch': torch.__version__, 'transformers': transformers.__version__,
          'torch_threads': str(torch.get_num_threads())}


def main(argv=None) -> None:
  args = parse_args(argv)
  import torch  # pylint: disable=g-import-not-at-top  (benchmark only, never in the library)
  import transformers  # pylint: disable=g-import-not-at-top
  transformers.logging.set_verbosity_error()
  torch.manual_seed(args.seed)
  info = machine_info()
  load_start = record.load_str()
  print(f'machine: {info}  load avg {load_start}', flush=True)

  rng = np.random.default_rng(args.seed)
  sids = make_sids(rng, args.num_items, args.codes, args.base_vocab)
  eos = args.base_vocab + SID_LEN * args.codes
  vocab = eos + 1
  num_users = max(args.batches)
  tokens_np, mask_np = make_prompts(rng, sids, num_users, args.min_history, args.max_history)
  prompt_len = tokens_np.shape[1]
  print(f'{args.num_items} items, vocab {vocab}, {num_users} users, prompts padded to '
        f'{prompt_len} tokens (real: {mask_np.sum(1).min()}-{mask_np.sum(1).max()})',
        flush=True)
  item_of = {tuple(row): i for i, row in enumerate(sids.tolist())}

  with tempfile.TemporaryDirectory() as ckpt_dir:
    write_checkpoint(ckpt_dir, args, vocab, eos)
    ckpt = hf_loading.load_checkpoint(ckpt_dir)
    hf_model = transformers.Qwen2ForCausalLM.from_pretrained(ckpt_dir, dtype=torch.float32)
  hf_model.eval()
  attn_impl = hf_model.config._attn_implementation  # pylint: disable=protected-access
  model = transformer.Transformer(ckpt.config)
  params = ckpt.params
  trie = jax.device_put(build_trie(sids))
  prefix_fn = make_prefix_allowed_tokens_fn(sids)
  profile = HFProfile(hf_model)
  max_len = prompt_len + SID_LEN  # room for the 4-step floor; the search writes 3 slots
  thread_options = ([args.torch_threads] if args.torch_threads else
                    sorted({1, torch.get_num_threads()}))

  if args.cache_probe:
    rows = max(args.beams) * max(args.batches)
    probe_rows = cache_probe(ckpt.config, params, rows, prompt_len, max(args.reps, 7))
    report = render_cache_probe(args, info, probe_rows, rows, prompt_len, load_start,
                                record.load_str())
    record.publish(report, args.results, RESULTS_HEADING, args.no_record)
    return

  # Both sides must see the same model: compare the prefill logits once.
  check_b = min(4, num_users)
  with torch.inference_mode():
    hf_logits = hf_model(input_ids=torch.from_numpy(tokens_np[:check_b]),
                         attention_mask=torch.from_numpy(mask_np[:check_b].astype(np.int64))
                         ).logits[:, -1].numpy()
  jax_logits = np.asarray(prefill_only(params, tokens_np[:check_b].astype(np.int32),
                                       mask_np[:check_b], model=model, max_len=max_len))
  logit_diff = float(np.abs(hf_logits - jax_logits).max())
  print(f'prefill logits max |HF - ours| = {logit_diff:.2e} (logit std '
        f'{hf_logits.std():.2f})', flush=True)

  rows = []
  for beam in args.beams:
    for batch in args.batches:
      tokens = jnp.asarray(tokens_np[:batch], jnp.int32)
      mask = jnp.asarray(mask_np[:batch])
      load_row = os.getloadavg()[0]
      statics = dict(model=model, max_len=max_len)

      # Ours: compile separately (reported on its own), then warm up.
      start = time.perf_counter()
      search = recommend.lower(params, trie, tokens, mask, beam_size=beam,
                               **statics).compile()
      compile_s = time.perf_counter() - start
      floors = {n: forward_floor.lower(params, tokens, mask, beam_size=beam, num_steps=n,
                                       **statics).compile() for n in (SID_LEN - 1, SID_LEN)}
      prefill = prefill_only.lower(params, tokens, mask, **statics).compile()
      jax_fns = {
          'search': lambda: search(params, trie, tokens, mask),
          'floor3': lambda: floors[SID_LEN - 1](params, tokens, mask),
          'floor4': lambda: floors[SID_LEN](params, tokens, mask),
          'prefill': lambda: prefill(params, tokens, mask),
      }
      for fn in jax_fns.values():
        _block(fn())

      # Hugging Face generate: warm-up, then the thread probe.
      input_ids = torch.from_numpy(tokens_np[:batch])
      attention_mask = torch.from_numpy(mask_np[:batch].astype(np.int64))

      def generate():
        with torch.inference_mode():
          return hf_model.generate(
              input_ids=input_ids, attention_mask=attention_mask, num_beams=beam,
              num_return_sequences=beam, prefix_allowed_tokens_fn=prefix_fn,
              max_new_tokens=SID_LEN, output_scores=True, return_dict_in_generate=True,
              early_stopping=True, do_sample=False, pad_token_id=PAD, eos_token_id=eos)

      generate()  # warm-up
      # Give the baseline its best thread count: on a loaded machine OpenMP's spinning
      # barriers can make 2 threads several times slower than 1.
      probe = {}
      for n in thread_options:
        torch.set_num_threads(n)
        start = time.perf_counter()
        generate()
        probe[n] = time.perf_counter() - start
      hf_threads = min(probe, key=probe.get)
      torch.set_num_threads(hf_threads)

      # Timed rounds, both sides in each round, so load changes hit them alike.
      rounds = args.reps if batch > 1 else 4 * args.reps
      hf_rounds = min(rounds, args.hf_reps if batch > 1 else 4 * args.hf_reps)
      times = {name: [] for name in [*jax_fns, 'hf']}
      profile.reset()
      for r in range(rounds):
        for name, fn in jax_fns.items():
          start = time.perf_counter()
          result = _block(fn())
          times[name].append(time.perf_counter() - start)
          if name == 'search':
            items, scores = result
        if r < hf_rounds:
          profile.begin_call()
          start = time.perf_counter()
          out = generate()
          times['hf'].append(time.perf_counter() - start)
      med = {name: statistics.median(t) for name, t in times.items()}
      ours_s, hf_s = med['search'], med['hf']
      hf_split = profile.per_call()
      items, scores = np.asarray(items), np.asarray(scores)

      # Same top-K? HF sequences are [B*K, T + 4], best first within each user.
      gen = out.sequences[:, prompt_len:].numpy().reshape(batch, beam, -1)
      hf_items = np.array([[item_of.get(tuple(seq), -1) for seq in user] for user in gen])
      hf_scores = out.sequences_scores.numpy().reshape(batch, beam) * SID_LEN  # undo lp=1
      same = int(np.sum(np.all(hf_items == items, axis=1)))
      same_set = int(sum(set(a) == set(b) for a, b in zip(hf_items.tolist(), items.tolist())))
      score_diff = float(np.abs(hf_scores - scores).max())
      gaps = np.diff(-scores, axis=1)  # adjacent score gaps of our lists
      row = dict(
          beam=beam, batch=batch, ours_ms=1e3 * ours_s, hf_ms=1e3 * hf_s,
          ours_ups=batch / ours_s, hf_ups=batch / hf_s, speedup=hf_s / ours_s,
          compile_s=compile_s, floor3_ms=1e3 * med['floor3'], floor4_ms=1e3 * med['floor4'],
          prefill_ms=1e3 * med['prefill'], search_over_floor=ours_s / med['floor3'],
          same=same, same_set=same_set, users=batch, invalid=int(np.sum(hf_items < 0)),
          score_diff=score_diff, min_gap=float(gaps.min()),
          hf_forwards=hf_split['forwards'], hf_prefill_ms=1e3 * hf_split['prefill'],
          hf_decode_ms=1e3 * hf_split['decode'], hf_processor_ms=1e3 * hf_split['processor'],
          hf_mean_ms=1e3 * statistics.mean(times['hf']), load=load_row,
          hf_threads=hf_threads, probe_s={n: round(t, 3) for n, t in probe.items()},
          rounds=rounds, hf_rounds=hf_rounds)
      rows.append(row)
      print(json.dumps({k: round(v, 4) if isinstance(v, float) else v
                        for k, v in row.items()}), flush=True)
      if same < batch:
        for u in np.flatnonzero(np.any(hf_items != items, axis=1))[:5]:
          print(f'  user {u}: ours {items[u].tolist()} {np.round(scores[u], 5).tolist()}\n'
                f'          HF   {hf_items[u].tolist()} {np.round(hf_scores[u], 5).tolist()}')

  report = render(args, info, rows, prompt_len, mask_np, vocab, logit_diff, attn_impl,
                  load_start, record.load_str())
  record.publish(report, args.results, RESULTS_HEADING, args.no_record)


def render(args, info, rows, prompt_len, mask_np, vocab, logit_diff, attn_impl, load_start,
           load_end) -> str:
  """The markdown section: setup, machine, command, tables."""
  command = _command(info)
  real = mask_np.sum(1)
  lines = [
      f'### {datetime.datetime.now().strftime("%Y-%m-%d %H:%M")}',
      '',
      f'- Command (repo root): `{command}`',
      f'- Machine: nproc={info["nproc"]} (of {info["cpus"]} CPUs), CPU {info["cpu"]}, jax '
      f'{info["jax"]}, torch '
      f'{info["torch"]} ({info["torch_threads"]} threads), transformers '
      f'{info["transformers"]} (attn `{attn_impl}`), float32 on CPU, both in one process.',
      f'- Load average (1/5/15 min): {load_start} at start, {load_end} at end; the machine was '
      'shared with other jobs, so absolute times are noisy (medians of repetitions).',
      f'- Model: Qwen2-shaped, hidden {args.hidden}, {args.layers} layers, {args.heads} heads / '
      f'{args.kv_heads} kv heads, intermediate {args.intermediate}, vocab {vocab} '
      f'({args.base_vocab} base + {SID_LEN}x{args.codes} SID + EOS), untied head, random '
      f'weights (logit std ~{args.logit_scale:g}). Prefill logits max |HF - ours| = '
      f'{logit_diff:.1e}.',
      f'- Data: {args.num_items} items with unique random {SID_LEN}-token SIDs; prompts = 3 '
      f'fixed tokens + {args.min_history}-{args.max_history} history items x {SID_LEN} SID '
      f'tokens + 2 separator tokens, {real.min()}-{real.max()} real tokens, left-padded to '
      f'{prompt_len}; users 0..B-1 of one seeded set (seed {args.seed}).',
      '- Ours: one jitted program = `prefill_shared` + `beam_search` (3 `decode_step`s '
      'reading the shared prompt KV). HF: '
      '`generate(num_beams=K, num_return_sequences=K, max_new_tokens=4, '
      'prefix_allowed_tokens_fn=<prefix dict>, output_scores, return_dict_in_generate, '
      'early_stopping=True)`. Times: median of '
      f'{args.reps} (ours) / {args.hf_reps} (HF) timed calls after a warm-up (x4 at batch 1), '
      'interleaved round by round (ours, floors, prefill, HF) so load changes hit both. '
      'HF threads: per row the faster of 1 and all cores, probed after the warm-up (the '
      'baseline gets its best setting; ours always uses XLA\'s default thread pool).',
      '',
      '| beam K | batch B | ours users/s | HF users/s | speed-up | ours ms | HF ms '
      '| JAX compile s | floor 1+3 ms | floor 1+4 ms | search / floor | same top-K '
      '| max abs dscore | min score gap | HF threads | load 1m |',
      '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for r in rows:
    lines.append(
        f'| {r["beam"]} | {r["batch"]} | {r["ours_ups"]:.1f} | {r["hf_ups"]:.1f} '
        f'| **{r["speedup"]:.1f}x** | {r["ours_ms"]:.1f} | {r["hf_ms"]:.1f} '
        f'| {r["compile_s"]:.1f} | {r["floor3_ms"]:.1f} | {r["floor4_ms"]:.1f} '
        f'| {r["search_over_floor"]:.2f} | {r["same"]}/{r["users"]} '
        f'| {r["score_diff"]:.1e} | {r["min_gap"]:.1e} | {r["hf_threads"]} '
        f'| {r["load"]:.1f} |')
  lines += [
      '',
      'same top-K: users whose K items are identical and in the same order. max abs dscore: '
      'largest |HF sequences_scores x 4 - our score| (HF divides by length 4, '
      'length_penalty=1). min score gap: smallest score gap between adjacent items of our '
      'lists (how close the nearest in-list ordering decision is to a tie; compare it with '
      'max abs dscore, the float disagreement between the two implementations).',
      '',
      'Where the time goes (ms per call; HF split measured with forward hooks and a timer '
      'around PrefixConstrainedLogitsProcessor, means over the timed calls):',
      '',
      '| beam K | batch B | ours: prefill | ours: floor 1+3 | ours: search | HF: forwards '
      '| HF: prefill (B*K rows) | HF: decode steps | HF: prefix processor | HF: rest |',
      '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for r in rows:
    rest = r['hf_mean_ms'] - r['hf_prefill_ms'] - r['hf_decode_ms'] - r['hf_processor_ms']
    lines.append(
        f'| {r["beam"]} | {r["batch"]} | {r["prefill_ms"]:.1f} | {r["floor3_ms"]:.1f} '
        f'| {r["ours_ms"]:.1f} | {r["hf_forwards"]:.0f} | {r["hf_prefill_ms"]:.1f} '
        f'| {r["hf_decode_ms"]:.1f} | {r["hf_processor_ms"]:.1f} | {rest:.1f} |')
  return '\n'.join(lines) + '\n'


def _command(info) -> str:
  command = 'python ' + ' '.join(shlex.quote(a) for a in
                                 [os.path.relpath(sys.argv[0], _REPO), *sys.argv[1:]])
  if info['nproc'] != info['cpus']:  # started under taskset: part of the command
    command = f'taskset -c {info["affinity"]} {command}'
  return command


def render_cache_probe(args, info, probe_rows, rows, prompt_len, load_start,
                       load_end) -> str:
  lines = [
      f'### {datetime.datetime.now().strftime("%Y-%m-%d %H:%M")} (KV-cache probe)',
      '',
      f'- Command (repo root): `{_command(info)}`',
      f'- Machine: nproc={info["nproc"]} (of {info["cpus"]} CPUs), CPU {info["cpu"]}, jax '
      f'{info["jax"]}; load average {load_start} at start, {load_end} at end.',
      f'- Same model as above; {rows} rows = beam {max(args.beams)} x batch '
      f'{max(args.batches)}. Today every beam row carries its own copy of its user\'s prompt '
      f'keys/values ({prompt_len} + {SID_LEN} slots). A shared-prefix layout would keep the '
      f'prompt KV once per user and give each beam row only the {SID_LEN} generated slots '
      '(second row; the attention of K queries per user over the shared prompt keys is not '
      'included there). Medians of jitted calls.',
      '',
      '| KV slots per row | KV cache MB | one decode_step ms | one beam reorder (gather) ms |',
      '|---:|---:|---:|---:|',
  ]
  for r in probe_rows:
    lines.append(f'| {r["slots"]} | {r["mb"]:.0f} | {r["step_ms"]:.0f} '
                 f'| {r["reorder_ms"]:.0f} |')
  return '\n'.join(lines) + '\n'


if __name__ == '__main__':
  main()
