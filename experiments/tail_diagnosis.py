r"""Where a generative run loses its tail targets: the target's log-probability per SID token.

  python experiments/tail_diagnosis.py --runs=runs/ghost_ins/LC-Rec/seed0,runs/ghost_ins/Ghost/seed0

For each finished run (its config.json, cached SIDs and best checkpoint), teacher-forces every
test user's target SID after the user's history and reports, for head and tail targets
separately: the mean log P of each SID token given the tokens before it, the mean log P of the
whole SID, the mean log P of the user's 10th-best beam item (the bar a target must clear to be
in the top 10), and the share of targets that clear it. If tail targets fail at the tokens a
tail SID shares with head items (the skeleton), the model prefers the head branch; if they fail
after it, the tail-specific tokens are not learned.
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
from genrec_jax.methods.sid_tokens import item_tokens_of  # pylint: disable=g-import-not-at-top,wrong-import-position


def target_log_probs(workdir: str, split: str = 'test', k: int = 10):
  """({'log_p': per-token log P [U, L] (NaN past the SID's end), 'bar': the k-th beam score
  [U], 'hit': target in the top k [U]}, is_tail [U], the run's name) for `split`'s targets."""
  config, dataset, method, params = run.load_run(workdir)

  @jax.jit
  def per_token(params, batch):
    tokens = item_tokens_of(method.item_tokens, batch['target'][:, None])  # [B, 1, L]
    logits = method.backbone.continuation_logits(params, method.prompt(batch),
                                                 tokens[..., :-1], None)
    return losses.target_log_probs(logits, tokens)[:, 0], tokens[:, 0] >= 0  # [B, L] twice

  rows = {'log_p': [], 'bar': [], 'hit': []}
  for batch, n in eval_batches(dataset, split, config.eval.batch_size, mask_history=False):
    log_p, valid = per_token(params, batch)
    # The evaluation's own search (its beam depends on the largest K), cut to the top k.
    items, scores = method.predict_topk(params, batch, max(k, *config.eval.ks))
    rows['log_p'].append(np.where(valid, log_p, np.nan)[:n])
    rows['bar'].append(np.asarray(scores)[:n, k - 1])
    rows['hit'].append((np.asarray(items)[:n, :k] == batch['target'][:n, None]).any(1))
  targets = dataset.split_targets(split)[0]
  return ({key: np.concatenate(value) for key, value in rows.items()},
          ~dataset.is_head[targets], config.name)


def table(workdirs: list[str], k: int = 10) -> str:
  lines = []
  for workdir in workdirs:
    rows, is_tail, name = target_log_probs(workdir, k=k)
    length = rows['log_p'].shape[1]
    lines += [f'### {name} ({workdir})', '',
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
    lines.append('')
  return '\n'.join(lines)


if __name__ == '__main__':
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--runs', required=True, help='comma-separated run workdirs')
  parser.add_argument('--k', type=int, default=10)
  args = parser.parse_args()
  print(table(args.runs.split(','), args.k))
