r"""Exposure bias per SID level: teacher-forced against free-running token accuracy.

  python experiments/exposure_bias.py \
      --runs=runs/ghost_table/LC-Rec_per_prefix/seed0,runs/ghost_table/LC-Rec_+_GENPLUGIN/seed0 \
      --out=experiments/exposure_bias_ml100k.md

For each finished generative run (its config.json, cached SIDs and best checkpoint; a
GENPLUGIN run twice: after pre-training and after its retrieval fine-tuning) and every user
of the split:
  teacher-forced  token i is predicted from the history and the target's true tokens c_<i:
                  the argmax over the tokens the item trie allows after c_<i is c_i?
  free-running    the trie-constrained greedy decode (beam search with one beam) reads its
                  own tokens: is its token i c_i? (Codes are per level, so a token after a
                  wrong one can still match: TIGER's last level, the collision index, mostly
                  does.) "On path": are its tokens 1..i all right?
Both are accuracies over the targets that have a token i; exposure bias is the gap (the
free-running decoder conditions on its own earlier mistakes, which it never saw in
training). Tail targets are reported apart. A second table gives each run's (and each
GENPLUGIN stage's) ranking metrics on the split, from the same params, so a smaller gap can be
read against what it does to the recommendations.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from genrec_jax import methods  # pylint: disable=g-import-not-at-top,wrong-import-position
from genrec_jax import run  # pylint: disable=g-import-not-at-top,wrong-import-position
from genrec_jax.data.pipeline import eval_batches  # pylint: disable=g-import-not-at-top,wrong-import-position
from genrec_jax.decode.beam_search import beam_search  # pylint: disable=g-import-not-at-top,wrong-import-position
from genrec_jax.eval.evaluate import evaluate  # pylint: disable=g-import-not-at-top,wrong-import-position
from genrec_jax.methods.sid_tokens import item_tokens_of  # pylint: disable=g-import-not-at-top,wrong-import-position
from launch import sweep  # pylint: disable=g-import-not-at-top,wrong-import-position


def allowed_after_prefixes(item_tokens: np.ndarray, targets: np.ndarray) -> np.ndarray:
  """[B, L, V] bool: the tokens the trie allows at level i after the target's true c_<i."""
  vocab = item_tokens.max() + 1
  length = item_tokens.shape[1]
  allowed = np.zeros((len(targets), length, vocab), bool)
  for b, target in enumerate(targets):
    same = np.ones(len(item_tokens), bool)
    for i in range(length):
      tokens = item_tokens[same, i]
      allowed[b, i, tokens[tokens >= 0]] = True
      same &= item_tokens[:, i] == item_tokens[target, i]
  return allowed


@functools.partial(jax.jit, static_argnums=0)
def _teacher_forced_logits(method, params, batch):
  tokens = item_tokens_of(method.item_tokens, batch['target'][:, None])  # [B, 1, L]
  return method.backbone.continuation_logits(params, method.prompt(batch), tokens[..., :-1],
                                             None)[:, 0]  # [B, L, V]


@functools.partial(jax.jit, static_argnums=0)
def _greedy_items(method, params, batch):
  first_logits, cache, shared = method.backbone.prefill(params, method.prompt(batch),
                                                        method.trie.max_len)
  step = lambda tokens, cache, _: method.backbone.decode_step(params, tokens, cache, shared)
  items, _ = beam_search(step, cache, method.trie, batch_size=batch['history'].shape[0],
                         beam_size=1, first_logits=first_logits)
  return items[:, 0]


def accuracies(loaded, split: str = 'test'):
  """(teacher-forced hits [U, L], free-running hits [U, L], has token i [U, L], is_tail [U])."""
  config, dataset, method, params = loaded
  item_tokens = np.asarray(method.item_tokens)
  teacher, free, valid = [], [], []
  for batch, n in eval_batches(dataset, split, config.eval.batch_size, mask_history=False):
    targets = batch['target'][:n]
    true = item_tokens[targets]  # [n, L]
    logits = np.asarray(_teacher_forced_logits(method, params, batch))[:n]
    allowed = allowed_after_prefixes(item_tokens, targets)
    logits = np.where(allowed, logits[..., :allowed.shape[-1]], -np.inf)
    teacher.append(logits.argmax(-1) == true)
    greedy = np.asarray(_greedy_items(method, params, batch))[:n]
    free.append(np.where(greedy[:, None] >= 0, item_tokens[np.maximum(greedy, 0)], -2) == true)
    valid.append(true >= 0)
  targets = dataset.split_targets(split)[0]
  return (np.concatenate(teacher), np.concatenate(free), np.concatenate(valid),
          ~dataset.is_head[targets])


def table(workdirs: list[str], split: str = 'test') -> str:
  for workdir in workdirs:  # before any work: every run decodes SIDs
    with open(os.path.join(workdir, 'config.json')) as f:
      method = json.load(f)['method']
    if methods.spec(method).family != 'generative':
      raise SystemExit(f'{workdir}: {method} is not a generative run (no SIDs to decode).')
  runs = ', '.join(sweep.run_label(w) for w in workdirs)
  lines = [f'# Exposure bias per SID level ({runs})', '',
           f'Split: {split}. Accuracy of SID token i over the targets that have one; gap = '
           'teacher-forced − free-running. A free-running token i is counted right when it '
           'equals the true one, whatever came before it (codes are per level, so a wrong path '
           'can still match it); "on path" counts it right only when tokens 1..i all are.', '',
           '| run | targets | level | teacher-forced | free-running | gap | free-running on '
           'path |', '|---|---|---|---|---|---|---|']
  ranking = ['', f'Ranking on the {split} split (full catalogue, beam search as trained):', '',
             '| run | HR@10 | tail HR@10 | NDCG@10 | MGU@10 ↓ | ARP@10 ↓ |',
             '|---|---|---|---|---|---|']
  for workdir in workdirs:
    final, first = run.load_run(workdir), run.load_run(workdir, phases=False)
    loaded = [first, final] if type(first.method) is not type(final.method) else [final]
    for stage, one in enumerate(loaded):
      name = one.config.name + (' (pre-training)' if stage == 0 and len(loaded) > 1 else '')
      scores = evaluate(one.method, one.params, one.dataset, split, one.config.eval,
                        one.config.seed)
      ranking.append(f'| {name} | ' + ' | '.join(
          f'{scores[k]:.4f}' if k != 'arp@10' else f'{scores[k]:.1f}'
          for k in ('hr@10', 'hr@10/tail', 'ndcg@10', 'mgu@10', 'arp@10')) + ' |')
      teacher, free, valid, is_tail = accuracies(one, split)
      on_path = np.logical_and.accumulate(free, axis=1)
      for group, rows in (('all', np.ones(len(is_tail), bool)), ('tail', is_tail)):
        for level in range(teacher.shape[1]):
          has = valid[rows, level]
          if not has.any():
            continue
          tf = teacher[rows, level][has].mean()
          fr = free[rows, level][has].mean()
          path = on_path[rows, level][has].mean()
          lines.append(f'| {name} | {group} ({has.sum()}) | {level + 1} | {tf:.4f} | '
                       f'{fr:.4f} | {tf - fr:+.4f} | {path:.4f} |')
  return '\n'.join(lines + ranking) + '\n'


if __name__ == '__main__':
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--runs', required=True, help='comma-separated run workdirs')
  parser.add_argument('--split', default='test', choices=('valid', 'test'))
  parser.add_argument('--out', default='', help='also write the table to this .md file')
  args = parser.parse_args()
  text = table(args.runs.split(','), args.split)
  print(text)
  if args.out:
    with open(args.out, 'w') as f:
      f.write(text)
