"""GENPLUGIN's related users (its retrieval-augmented long-tail fine-tuning), on the host.

For every user u, from training items only (the valid split's history: never a valid or
test item of anyone):
  context        BM25 (the `bm25s` package, its default Lucene variant, k1 1.5, b 0.75) of
                 u's document against every other user's: a document is the titles of the
                 user's last `history` training items, lower-cased words of 2+ characters
                 (scikit-learn's token pattern, as bm25s tokenizes); top `top` users
  collaborative  cosine of SASRec user vectors (the run embed.cf_run); top `top` users
  fused          users in both lists first (in BM25 order), then the other candidates of
                 either list by cosine of GENPLUGIN's cached user embeddings (its ID
                 encoder's mean state over the user's history) with u's; the first `keep`
A user is never their own neighbour; ties go to the lower user id. -1 pads short lists.
"""

from __future__ import annotations

import re

import bm25s
import numpy as np

TOKEN_PATTERN = re.compile(r'(?u)\b\w\w+\b')  # scikit-learn's, which bm25s.tokenize uses


def tokenize(text: str) -> list[str]:
  return TOKEN_PATTERN.findall(text.lower())


def user_documents(dataset, history: int = 20) -> list[list[str]]:
  """Per user, the words of the titles of their last `history` training items."""
  titles = [text.get('title', '') for text in dataset.item_text]
  if not any(titles):
    raise ValueError(f'{dataset.name}: no item has a title, and GENPLUGIN retrieves users '
                     'by the titles of their items (set genplugin.finetune_epochs=0 and '
                     'genplugin.finetune_steps=0 to train without retrieval).')
  return [tokenize(' '.join(titles[i] for i in dataset.train_sequence(u)[-history:]))
          for u in range(dataset.num_users)]


def top_others(scores: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
  """[R, k] columns of the highest scores of each row, leaving out column rows[r] (the user
  itself); ties to the lower column; -1 where fewer than k others exist."""
  scores = np.array(scores, np.float64)
  scores[np.arange(len(rows)), rows] = -np.inf
  order = np.argsort(-scores, axis=1, kind='stable')[:, :k]
  found = np.isfinite(np.take_along_axis(scores, order, axis=1))
  out = np.where(found, order, -1)
  return np.pad(out, ((0, 0), (0, k - out.shape[1])), constant_values=-1)


def bm25_neighbours(documents: list[list[str]], k: int) -> np.ndarray:
  """[U, k] users whose documents score highest (BM25) against each user's document."""
  retriever = bm25s.BM25()
  retriever.index(documents, show_progress=False)
  empty = np.zeros(len(documents), np.float32)
  scores = np.stack([retriever.get_scores(doc) if doc else empty for doc in documents])
  return top_others(scores, np.arange(len(documents)), k)


def cosine_neighbours(vectors: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
  """[U, k] users of the most similar vectors (cosine) to each user's."""
  x = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
  return np.concatenate([top_others(x[s:s + chunk] @ x.T, np.arange(s, min(s + chunk, len(x))),
                                    k) for s in range(0, len(x), chunk)])


def fuse(context: np.ndarray, collaborative: np.ndarray, embeddings: np.ndarray,
         keep: int) -> np.ndarray:
  """[U, keep] neighbours: users in both lists first (context order), then the rest of
  either list by cosine of `embeddings` [U, d] with the user's own (ties: the order they
  first appear in, context then collaborative); -1 pads."""
  x = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
  out = np.full((len(context), keep), -1, np.int64)
  for u, (text, cf) in enumerate(zip(context, collaborative)):
    text, cf = [int(v) for v in text if v >= 0], [int(v) for v in cf if v >= 0]
    both = [v for v in text if v in set(cf)]
    rest = [v for v in dict.fromkeys(text + cf) if v not in set(both)]
    rest = [rest[i] for i in np.argsort(-(x[rest] @ x[u]), kind='stable')] if rest else []
    chosen = (both + rest)[:keep]
    out[u, :len(chosen)] = chosen
  return out


def neighbours(dataset, cf_vectors: np.ndarray, embeddings: np.ndarray, *, top: int = 50,
               keep: int = 30, history: int = 20) -> tuple[np.ndarray, dict]:
  """([U, keep] fused neighbours, statistics) of every user (module doc)."""
  context = bm25_neighbours(user_documents(dataset, history), top)
  collaborative = cosine_neighbours(cf_vectors, top)
  fused = fuse(context, collaborative, embeddings, keep)
  both = [len(set(a[a >= 0]) & set(b[b >= 0])) for a, b in zip(context, collaborative)]
  stats = {'users_in_both_lists_mean': float(np.mean(both)),
           'neighbours_mean': float((fused >= 0).sum(1).mean())}
  return fused, stats
