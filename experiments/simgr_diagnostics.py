r"""How far token-level decoding is from the token-level model's own item distribution, on a
finished run whose catalogue is small enough to enumerate (SimGR's argument, measured).

  python experiments/simgr_diagnostics.py --run=runs/ghost_table/SimGR/seed0
  python experiments/simgr_diagnostics.py --run=DIR --users=200 --out=/tmp/diag   # quicker

For every user of the split (test by default), with h the history:
  exact      the AR SID head's log P(v | h) of EVERY item v of the trie, teacher-forced
             (decode/sid_distribution.py; softmax over the full vocabulary, as the beam
             search scores, then normalised over the catalogue: the mass the model puts on
             token paths that are no item is reported as 'off-catalogue mass')
  beam W     the trie beam search of the same head at width W (5, 10, 20, 50, 100): the
             items it returns, with their exact probabilities; the mass it never returns is
             spread evenly over the items it missed (eval/distribution.py: the most
             generous estimate a beam allows, so its KL is a lower bound)
  parallel   the parallel SID head (every position predicted from h at once):
             Π_p P_p(class_v^p | h) over the catalogue's SIDs only (SimGR runs)
  marginals  Π_p m_p(class_v^p) with m_p the exact distribution's own per-position
             marginals: the parallel estimate with a perfect head, i.e. the error of the
             independence assumption alone
  SimGR      the run's item-level softmax of similarities (another model, on the same
             backbone; context, not an estimate of the exact distribution)
and reports: recall of the exact top-K (K = 1, 5, 10; for beam the items it returns, for
the others their own top-K), the exact mass beam never returns, KL(exact ‖ estimate) and the
Spearman correlation over the catalogue, each also within head and within tail items, and
the tail's share of the mass (exact against estimate); then HR/NDCG@10 (all, tail),
coverage@10 and entropy@10 of each scorer's own top-10 lists. Prints the tables, writes
OUT.md, OUT.json, OUT_beam_recall.png and OUT_head_tail.png (OUT defaults to
experiments/simgr_<run name>).

Works on generative runs too (LC-Rec, Ghost: their backbone is the AR head; no parallel or
SimGR rows).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from genrec_jax import run as run_lib  # pylint: disable=g-import-not-at-top
from genrec_jax.decode.sid_distribution import product_of_marginals  # pylint: disable=g-import-not-at-top
from genrec_jax.decode.sid_distribution import trie_paths  # pylint: disable=g-import-not-at-top
from genrec_jax.eval import distribution as dist  # pylint: disable=g-import-not-at-top
from genrec_jax.eval import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
from genrec_jax.methods import simgr  # pylint: disable=g-import-not-at-top

KS = (1, 5, 10)


def saved_config(run_dir: str) -> ml_collections.ConfigDict:
  """The run's config.json; records written before model.checkpoint replaced model.hf_dir
  (issue 19) name the field by its old name, which the methods no longer read."""
  path = os.path.join(run_dir, 'config.json')
  if not os.path.exists(path):
    raise run_lib.WorkdirError(f'{run_dir} has no config.json: not a run directory.')
  with open(path) as f:
    config = json.load(f)
  model = config.get('model', {})
  if 'hf_dir' in model and 'checkpoint' not in model:
    model['checkpoint'] = model.pop('hf_dir')
  return ml_collections.ConfigDict(config)


def as_simgr(loaded):
  """(SimGR method, its params) of a loaded run; a generative run's method is wrapped so its
  backbone serves as the AR head (its parallel head and similarities are not trained)."""
  method, params = loaded.method, loaded.params
  if isinstance(method, simgr.SimGR):
    return method, params, True
  sids = loaded.method.sids
  wrapper = simgr.SimGR(method, eos_token=sids.eos_token if sids.ends_with_eos.any() else None,
                        num_sid_tokens=sids.vocab_size, terms=())
  extra = wrapper.init(jax.random.PRNGKey(0))
  return wrapper, {**extra, 'backbone': params}, False


def user_scores(method, params, histories, beams, normalize, trie_nodes, chunk_items,
                has_heads):
  """Per batch of users: {'exact', 'parallel', 'similarity': [B, I], 'beam W': [B, W]}."""
  batch = {'history': jnp.asarray(histories, jnp.int32)}
  out = {'exact': np.asarray(method.ar_scores(params, batch['history'], chunk_items, normalize,
                                              trie_nodes), np.float64)}
  if has_heads:
    out['parallel'] = np.asarray(method.parallel_scores(params, batch['history']), np.float64)
    out['similarity'] = np.asarray(_similarity(method)(params, batch), np.float64)
  for width in beams:
    out[f'beam {width}'] = np.asarray(method.beam_topk(params, batch, width, width)[0])
  return out


_JITTED = {}


def _similarity(method):
  if method not in _JITTED:
    _JITTED[method] = jax.jit(method.similarity_scores)
  return _JITTED[method]


def estimator_rows(scores, classes, num_classes, is_head, has_heads, beams):
  """{estimator: {metric: [B] values}} for one batch of users."""
  exact = scores['exact']
  rows = {}
  for width in beams:
    found = scores[f'beam {width}']
    estimate = dist.beam_estimate(exact, found)
    rows[f'beam {width}'] = _compare(exact, estimate, is_head, found=found)
  marginals = np.asarray(product_of_marginals(jnp.asarray(exact, jnp.float32),
                                              jnp.asarray(classes), num_classes), np.float64)
  rows['marginals'] = _compare(exact, marginals, is_head)
  if has_heads:
    rows['parallel'] = _compare(exact, scores['parallel'], is_head)
    rows['SimGR'] = _compare(exact, scores['similarity'], is_head)
  return rows


def _compare(exact, estimate, is_head, found=None):
  tail = ~is_head
  own_top = found if found is not None else dist.exact_topk(estimate, max(KS))
  row = {}
  for k in KS:
    returned = own_top if found is not None else own_top[:, :k]
    row[f'recall@{k}'] = dist.topk_recall(exact, returned, k)
  returned = own_top if found is not None else own_top[:, :10]
  row['recall@10 head'] = dist.topk_recall(exact, returned, 10, is_head)
  row['recall@10 tail'] = dist.topk_recall(exact, returned, 10, tail)
  if found is not None:
    row['missed mass'] = dist.missed_mass(exact, found)
    row['missed mass head'] = dist.missed_mass(exact, found, is_head)
    row['missed mass tail'] = dist.missed_mass(exact, found, tail)
  row['KL'] = dist.kl(exact, estimate)
  row['KL head'] = dist.kl(exact, estimate, is_head)
  row['KL tail'] = dist.kl(exact, estimate, tail)
  row['Spearman'] = dist.spearman(exact, estimate)
  row['Spearman head'] = dist.spearman(exact, estimate, is_head)
  row['Spearman tail'] = dist.spearman(exact, estimate, tail)
  # The tail's share of what the estimator puts forward: for a beam, of the mass of the
  # items it returns (its own distribution), not of the evenly spread remainder.
  shown = estimate if found is None else np.where(dist.found_mask(found, exact.shape[1]),
                                                  exact, -np.inf)
  row['tail mass'] = dist.group_mass(shown, tail)
  return row


def markdown_table(header, rows):
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
  return '\n'.join(lines)


def fmt(x):
  return '' if x is None or not np.isfinite(x) else f'{x:.4f}'


def plots(summary, beams, out, title):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  est = summary['estimators']
  fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
  for k, style in zip(KS, ('-o', '-s', '-^')):
    left.plot(beams, [est[f'beam {w}'][f'recall@{k}'] for w in beams], style,
              label=f'exact top-{k}')
  left.plot(beams, [est[f'beam {w}']['recall@10 head'] for w in beams], ':o', color='grey',
            label='exact top-10, head items')
  left.plot(beams, [est[f'beam {w}']['recall@10 tail'] for w in beams], '--o', color='black',
            label='exact top-10, tail items')
  left.set(xscale='log', xticks=beams, xlabel='beam width', ylabel='recall by the beam',
           ylim=(0, 1.02), title='Recall of the exact top-K')
  left.set_xticklabels([str(w) for w in beams])
  left.minorticks_off()
  left.legend(fontsize=8)
  for key, style, label in (('missed mass', '-o', 'all items'),
                            ('missed mass head', ':o', 'within head items'),
                            ('missed mass tail', '--o', 'within tail items')):
    right.plot(beams, [est[f'beam {w}'][key] for w in beams], style, label=label)
  right.set(xscale='log', xticks=beams, xlabel='beam width', ylim=(0, 1.02),
            ylabel='exact probability mass never returned', title='Mass the beam never returns')
  right.set_xticklabels([str(w) for w in beams])
  right.minorticks_off()
  right.legend(fontsize=8)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  recall_path = f'{out}_beam_recall.png'
  fig.savefig(recall_path, dpi=120)
  plt.close(fig)

  names = [n for n in est if n != 'exact']
  fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
  x = np.arange(len(names))
  for offset, key, label in ((-0.2, 'recall@10 head', 'head items'),
                             (0.2, 'recall@10 tail', 'tail items')):
    left.bar(x + offset, [est[n][key] for n in names], 0.4, label=label)
  left.set(xticks=x, ylim=(0, 1.02), ylabel='recall of the exact top-10',
           title='Exact top-10 found, by item group')
  left.set_xticklabels(names, rotation=30, ha='right')
  left.legend(fontsize=8)
  tail_exact = summary['exact']['tail mass']
  right.bar(x, [est[n]['tail mass'] for n in names], 0.6, color='tab:green',
            label='estimate (beam: the items it returns)')
  right.axhline(tail_exact, color='black', ls='--', label=f'exact ({tail_exact:.3f})')
  right.set(xticks=x, ylabel="tail items' share of the mass",
            title='Tail mass: exact against each estimate')
  right.set_xticklabels(names, rotation=30, ha='right')
  right.legend(fontsize=8)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  bars_path = f'{out}_head_tail.png'
  fig.savefig(bars_path, dpi=120)
  plt.close(fig)
  return recall_path, bars_path


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--run', required=True, help='a finished run directory')
  parser.add_argument('--split', default='test', choices=('valid', 'test'))
  parser.add_argument('--beams', default='5,10,20,50,100')
  parser.add_argument('--users', type=int, default=0, help='first N users only (0 = all)')
  parser.add_argument('--batch', type=int, default=16, help='users per batch')
  parser.add_argument('--chunk_items', type=int, default=128,
                      help='items teacher-forced at once per user batch')
  parser.add_argument('--normalize', default='vocab', choices=('vocab', 'trie'),
                      help="exact P: softmax over the vocabulary (the beam's scores) or over "
                           "the tokens the trie allows")
  parser.add_argument('--out', default='', help='output prefix (default experiments/simgr_<name>)')
  args = parser.parse_args()
  beams = tuple(int(b) for b in args.beams.split(','))

  loaded = run_lib.load_run(args.run, config=saved_config(args.run))
  method, params, has_heads = as_simgr(loaded)
  dataset, name = loaded.dataset, loaded.config.name
  out = args.out or os.path.join('experiments', 'simgr_' + re.sub(r'[^a-z0-9]+', '_',
                                                                     name.lower()).strip('_'))
  histories, _, targets = dataset.histories(args.split)
  users = len(targets) if not args.users else min(args.users, len(targets))
  is_head = np.asarray(dataset.is_head)
  tokens = np.asarray(method.generator.item_tokens_host)
  nodes = (jnp.asarray(trie_paths(method.generator.trie, tokens)) if args.normalize == 'trie'
           else None)
  per_user = {}
  tops = {'exact': [], 'parallel': [], 'SimGR': [], **{f'beam {w}': [] for w in beams}}
  exact_stats = {'off-catalogue mass': [], 'tail mass': []}
  start = time.time()
  for lo in tqdm.tqdm(range(0, users, args.batch), desc='users', unit='batch'):
    hi = min(lo + args.batch, users)
    rows = np.arange(lo, hi)
    padded = np.pad(rows, (0, args.batch - len(rows)), mode='edge')  # one compiled shape
    scores = user_scores(method, params, histories[padded], beams, args.normalize, nodes,
                         args.chunk_items, has_heads)
    scores = {k: v[:len(rows)] for k, v in scores.items()}
    exact_stats['off-catalogue mass'].append(1 - np.exp(scores['exact']).sum(1))
    exact_stats['tail mass'].append(dist.group_mass(scores['exact'], ~is_head))
    batch_rows = estimator_rows(scores, np.asarray(method.classes), method.num_classes,
                                is_head, has_heads, beams)
    for est, metrics in batch_rows.items():
      for key, values in metrics.items():
        per_user.setdefault(est, {}).setdefault(key, []).append(values)
    tops['exact'].append(dist.exact_topk(scores['exact'], 20))
    for w in beams:
      found = scores[f'beam {w}']
      tops[f'beam {w}'].append(np.pad(found, ((0, 0), (0, max(0, 20 - w))),
                                      constant_values=-1)[:, :20])
    if has_heads:
      tops['parallel'].append(dist.exact_topk(scores['parallel'], 20))
      tops['SimGR'].append(dist.exact_topk(scores['similarity'], 20))
  seconds = time.time() - start

  mean = lambda chunks: float(np.nanmean(np.concatenate(chunks)))
  summary = {'run': args.run, 'name': name, 'split': args.split, 'users': users,
             'normalize': args.normalize, 'seconds': seconds,
             'exact': {k: mean(v) for k, v in exact_stats.items()},
             'estimators': {est: {k: mean(v) for k, v in m.items()}
                            for est, m in per_user.items()}}
  ks = (1, 5, 10, 20)
  accuracy = {}
  for scorer, chunks in tops.items():
    if not chunks:
      continue
    topk = np.concatenate(chunks)
    accuracy[scorer] = metrics_lib.compute_all(topk, targets[:users], dataset.item_counts,
                                               is_head, dataset.item_group, ks)
  summary['accuracy'] = {s: {k: m[k] for k in ('hr@10', 'hr@10/tail', 'ndcg@10',
                                               'coverage@10', 'entropy@10', 'tail_slots@10')}
                         for s, m in accuracy.items()}

  est = summary['estimators']
  header = ['estimator', *[f'recall@{k}' for k in KS], 'missed mass', 'KL', 'Spearman',
            'tail mass (exact ' + fmt(summary['exact']['tail mass']) + ')']
  table_1 = markdown_table(header, [[n, *[fmt(m[f'recall@{k}']) for k in KS],
                                     fmt(m.get('missed mass')), fmt(m['KL']),
                                     fmt(m['Spearman']), fmt(m['tail mass'])]
                                    for n, m in est.items()])
  header = ['estimator', 'recall@10 head', 'recall@10 tail', 'missed mass head',
            'missed mass tail', 'KL head', 'KL tail', 'Spearman head', 'Spearman tail']
  table_2 = markdown_table(header, [[n, *[fmt(m.get(k)) for k in header[1:]]]
                                    for n, m in est.items()])
  header = ['scorer (own top-10)', 'HR@10', 'HR@10 tail', 'NDCG@10', 'coverage@10',
            'entropy@10', 'tail slots@10']
  table_3 = markdown_table(header, [[s, *[fmt(m[k]) if k != 'tail_slots@10' else
                                          f'{m[k]:.0f}' for k in summary['accuracy'][s]]]
                                    for s, m in summary['accuracy'].items()])
  where = (f'{name} ({args.run}), {dataset.name}, {args.split} split, {users} users, exact '
           f'P normalised over the {"vocabulary" if args.normalize == "vocab" else "trie"}')
  figures = plots(summary, beams, out, where)
  text = '\n\n'.join([
      f'# Token-level estimators against the exact item distribution: {where}',
      f'Off-catalogue mass of the AR head (mean over users): '
      f'{summary["exact"]["off-catalogue mass"]:.4f}. {seconds:.0f} s.',
      '## Against the exact distribution', table_1,
      '## Within head items and within tail items', table_2,
      '## Each scorer\'s own top-10 lists', table_3,
      'Figures: ' + ', '.join(os.path.basename(f) for f in figures)]) + '\n'
  print(text)
  with open(f'{out}.md', 'w') as f:
    f.write(text)
  with open(f'{out}.json', 'w') as f:
    json.dump(summary, f, indent=1)


if __name__ == '__main__':
  main()
