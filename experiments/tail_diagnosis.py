r"""Where a generative run loses its tail targets.

  python experiments/tail_diagnosis.py --runs=runs/ghost_ins/LC-Rec/seed0,runs/ghost_ins/Ghost/seed0

For each finished run (its config.json, cached SIDs and best checkpoint), on the test split:

1. The target's log-probability per SID token. Teacher-forces every test user's target SID
   after the user's history and reports, for head and tail targets separately: the mean log P
   of each SID token given the tokens before it, of the whole SID, of the user's 10th-best
   beam item (the bar a target must clear to be in the top 10), and the share of targets that
   clear it. If tail targets fail at the tokens a tail SID shares with head items (the
   skeleton), the model prefers the head branch; if they fail after it, the tail-specific
   tokens are not learned.
2. How often the tail-specific codes are trained: per SID level, the trie nodes that only tail
   items reach (no head item has that prefix) and how many per-prefix training targets pass
   through each, beside the nodes head items reach. Rarely trained nodes cannot be learned.
3. Whether AUO pushes down the items that win: for the tail targets missing from the top 10,
   the share of their top-10 items that are their AUO distractors (Ghost's K_b head items;
   for a run without AUO, those Ghost would choose with its defaults), how many of those
   items are head items or among the 50 most popular, their popularity rank against the
   distractors', and the common SID prefix of the target and the top-1 item.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from genrec_jax import losses  # pylint: disable=g-import-not-at-top,wrong-import-position
from genrec_jax import run  # pylint: disable=g-import-not-at-top,wrong-import-position
from genrec_jax.data.pipeline import eval_batches  # pylint: disable=g-import-not-at-top,wrong-import-position
from genrec_jax.methods import ghost  # pylint: disable=g-import-not-at-top,wrong-import-position
from genrec_jax.methods.sid_tokens import item_tokens_of  # pylint: disable=g-import-not-at-top,wrong-import-position


def target_log_probs(loaded: run.LoadedRun, split: str = 'test', k: int = 10):
  """{'log_p': per-token log P [U, L] (NaN past the SID's end), 'bar': the k-th beam score
  [U], 'hit': target in the top k [U], 'top': the top k items [U, k]} for `split`'s
  targets."""
  config, dataset, method, params = loaded

  @jax.jit
  def per_token(params, batch):
    tokens = item_tokens_of(method.item_tokens, batch['target'][:, None])  # [B, 1, L]
    logits = method.backbone.continuation_logits(params, method.prompt(batch),
                                                 tokens[..., :-1], None)
    return losses.target_log_probs(logits, tokens)[:, 0], tokens[:, 0] >= 0  # [B, L] twice

  rows = {'log_p': [], 'bar': [], 'hit': [], 'top': []}
  for batch, n in eval_batches(dataset, split, config.eval.batch_size, mask_history=False):
    log_p, valid = per_token(params, batch)
    # The evaluation's own search (its beam depends on the largest K), cut to the top k.
    items, scores = method.predict_topk(params, batch, max(k, *config.eval.ks))
    rows['log_p'].append(np.where(valid, log_p, np.nan)[:n])
    rows['bar'].append(np.asarray(scores)[:n, k - 1])
    rows['top'].append(np.asarray(items)[:n, :k])
    rows['hit'].append((rows['top'][-1] == batch['target'][:n, None]).any(1))
  return {key: np.concatenate(value) for key, value in rows.items()}


def node_support(item_tokens: np.ndarray, is_head: np.ndarray,
                 target_counts: np.ndarray) -> list[dict]:
  """Per SID level l (0-based), the trie nodes at depth l + 1 (an item's first l + 1 tokens)
  split into those a head item reaches and those only tail items reach, each with the number
  of training targets whose SID passes through it: {'level', 'head_support' [nodes],
  'tail_support' [nodes]}. item_tokens [I, L] is padded with -1."""
  out = []
  for level in range(item_tokens.shape[1]):
    has = item_tokens[:, level] >= 0
    _, node = np.unique(item_tokens[has, :level + 1], axis=0, return_inverse=True)
    node = node.reshape(-1)
    num_nodes = node.max() + 1 if node.size else 0
    support = np.bincount(node, weights=target_counts[has], minlength=num_nodes)
    reached_by_head = np.bincount(node, weights=is_head[has], minlength=num_nodes) > 0
    out.append({'level': level, 'head_support': support[reached_by_head],
                'tail_support': support[~reached_by_head]})
  return out


def common_prefix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Length of the common prefix of SID rows a and b [..., L] (padding -1 never matches)."""
  return np.cumprod((a == b) & (a >= 0), axis=-1).sum(-1)


def winners_vs_distractors(top: np.ndarray, targets: np.ndarray, hit: np.ndarray,
                           is_head: np.ndarray, distractors: np.ndarray,
                           item_tokens: np.ndarray, popularity_rank: np.ndarray) -> dict:
  """Over the tail targets missing from their top k (top [U, k]): the mean share of the top k
  that are the target's distractors ([I, K_b]), the share of distractors that made the top k,
  the mean share of head items and of the 50 most popular items (popularity_rank [I], 0 the
  most popular) in the top k, the median popularity rank of those top-k items and of the
  distractors, and the mean common SID prefix of target and top-1 item."""
  missed = ~is_head[targets] & ~hit
  if not missed.any():
    return {'missed': 0}
  top, targets = top[missed], targets[missed]
  own = distractors[targets]  # [M, K_b]
  return {'missed': int(missed.sum()),
          'distractor_share': float((top[:, :, None] == own[:, None, :]).any(-1).mean()),
          'distractors_in_top': float((own[:, :, None] == top[:, None, :]).any(-1).mean()),
          'head_share': float(is_head[top].mean()),
          'top50_share': float((popularity_rank[top] < 50).mean()),
          'winner_rank': float(np.median(popularity_rank[top])),
          'distractor_rank': float(np.median(popularity_rank[own])),
          'top1_prefix': float(common_prefix(item_tokens[targets], item_tokens[top[:, 0]]).mean())}


def distractors_of(loaded: run.LoadedRun, workdir: str) -> np.ndarray:
  """The run's AUO distractors, or for a run without AUO those Ghost's defaults would pick
  from its item embeddings and SIDs."""
  if getattr(loaded.method, 'branch_items', None) is not None:
    return np.asarray(loaded.method.branch_items)
  embeddings = run.item_vectors(loaded.config, loaded.dataset, workdir)
  defaults = ghost.default_config().ghost
  return np.maximum(ghost.undesired_collection(embeddings, loaded.method.sids.item_tokens(),
                                               loaded.dataset.is_head, defaults.k_a,
                                               defaults.k_b), 0)


def report(workdir: str, k: int = 10) -> str:
  loaded = run.load_run(workdir)
  dataset, method = loaded.dataset, loaded.method
  rows = target_log_probs(loaded, k=k)
  targets = dataset.split_targets('test')[0]
  is_tail = ~dataset.is_head[targets]
  item_tokens = np.asarray(method.sids.item_tokens())
  length = rows['log_p'].shape[1]
  lines = [f'### {loaded.config.name} ({workdir})', '',
           '| targets | users | ' + ' | '.join(f'log P token {i + 1}' for i in range(length))
           + f' | log P (SID) | log P of the #{k} beam item | clear it | HR@{k} |',
           '|---' * (length + 6) + '|']
  for group, members in (('head', ~is_tail), ('tail', is_tail)):
    log_p = rows['log_p'][members]
    total = np.nansum(log_p, axis=1)
    cells = [f'{np.nanmean(col):.2f}' if np.isfinite(col).any() else '–' for col in log_p.T]
    lines.append(
        f'| {group} | {members.sum()} | ' + ' | '.join(cells) +
        f' | {total.mean():.2f} | {rows["bar"][members].mean():.2f} | '
        f'{(total >= rows["bar"][members]).mean():.4f} | {rows["hit"][members].mean():.4f} |')
  _, positions = dataset.train_examples()
  counts = np.bincount(dataset.seq_items[positions], minlength=dataset.num_items)
  lines += ['', 'Training targets through each trie node (per-prefix targets; the nodes only '
            'tail items reach against those a head item reaches):', '',
            '| SID level | head nodes | median targets | tail-only nodes | median targets | '
            'tail-only nodes with < 5 targets |', '|---|---|---|---|---|---|']
  for level in node_support(item_tokens, dataset.is_head, counts):
    head, tail = level['head_support'], level['tail_support']
    median = lambda x: f'{np.median(x):.0f}' if len(x) else '–'
    rare = f'{(tail < 5).mean():.2f}' if len(tail) else '–'
    lines.append(f'| {level["level"] + 1} | {len(head)} | {median(head)} | {len(tail)} | '
                 f'{median(tail)} | {rare} |')
  distractors = distractors_of(loaded, workdir)
  popularity_rank = np.argsort(np.argsort(-dataset.item_counts, kind='stable'), kind='stable')
  w = winners_vs_distractors(rows['top'], targets, rows['hit'], dataset.is_head, distractors,
                             item_tokens, popularity_rank)
  chance = distractors.shape[1] / max(int(dataset.is_head.sum()), 1)
  if w['missed']:
    lines += ['', f'Tail targets missing from the top {k} ({w["missed"]}): '
              f'{w["distractor_share"]:.3f} of their top-{k} items are their AUO distractors '
              f'({chance:.3f} if they were random head items); {w["distractors_in_top"]:.3f} '
              f'of the distractors are in the top {k}; {w["head_share"]:.3f} of the top-{k} '
              f'items are head items and {w["top50_share"]:.3f} are among the 50 most popular; '
              f'their median popularity rank is {w["winner_rank"]:.0f}, the distractors\' '
              f'{w["distractor_rank"]:.0f}; the top-1 item shares {w["top1_prefix"]:.2f} '
              'leading SID tokens with the target.', '']
  return '\n'.join(lines)


if __name__ == '__main__':
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--runs', required=True, help='comma-separated run workdirs')
  parser.add_argument('--k', type=int, default=10)
  args = parser.parse_args()
  print('\n'.join(report(workdir, args.k) for workdir in args.runs.split(',')))
