"""RecBole 1.2.1's SASRec on atomic files written by recbole_sasrec_benchmark.py.

Runs in RecBole's own virtual environment (PyTorch CPU, numpy<2), never in genrec_jax's:
  /work/recbole_venv/bin/python benchmarks/recbole_sasrec_worker.py --data_dir=DIR \
      --dataset=NAME --epochs=2 [--steps=N] [--converge] --out=result.json
Timing mode trains --epochs epochs and records each one's wall time (training only, as
RecBole's own "epoch N training [time: ...]"); with --steps=N it instead times N training
steps one by one (the body of RecBole's Trainer._train_epoch: next batch, zero_grad,
calculate_loss, backward, optimizer step) and reports their median, for machines where a
whole epoch takes too long. --converge trains up to --epochs with RecBole's
early stopping on valid NDCG@10 (--patience epochs) and reports the best model's test
HR@10 / NDCG@10 (full ranking, past items not masked, as RecBole ranks for sequential models).
"""

import argparse
import json
import time

import torch
from recbole.config import Config
from recbole.data import create_dataset
from recbole.data import data_preparation
from recbole.model.sequential_recommender import SASRec
from recbole.trainer import Trainer
from recbole.utils import init_seed


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--data_dir', required=True)
  parser.add_argument('--dataset', required=True)
  parser.add_argument('--epochs', type=int, default=2)
  parser.add_argument('--converge', action='store_true')
  parser.add_argument('--steps', type=int, default=0, help='time this many steps, not epochs')
  parser.add_argument('--patience', type=int, default=5)
  parser.add_argument('--batch_size', type=int, default=256)
  parser.add_argument('--lr', type=float, default=1e-3)
  parser.add_argument('--threads', type=int, default=2)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--out', required=True)
  args = parser.parse_args()
  torch.set_num_threads(args.threads)
  settings = {
      'data_path': args.data_dir, 'dataset': args.dataset, 'device': 'cpu', 'use_gpu': False,
      'seed': args.seed, 'reproducibility': True, 'show_progress': False, 'worker': 0,
      'checkpoint_dir': f'{args.data_dir}/saved', 'log_wandb': False,
      'load_col': {'inter': ['user_id', 'item_id', 'timestamp']},
      'USER_ID_FIELD': 'user_id', 'ITEM_ID_FIELD': 'item_id', 'TIME_FIELD': 'timestamp',
      'user_inter_num_interval': '[0,inf)', 'item_inter_num_interval': '[0,inf)',
      'MAX_ITEM_LIST_LENGTH': 20,
      # the same model as genrec_jax's SASRec at these settings
      'n_layers': 2, 'n_heads': 2, 'hidden_size': 64, 'inner_size': 64, 'hidden_act': 'relu',
      'hidden_dropout_prob': 0.2, 'attn_dropout_prob': 0.2, 'loss_type': 'CE',
      'train_neg_sample_args': None,
      'train_batch_size': args.batch_size, 'learning_rate': args.lr, 'epochs': args.epochs,
      'eval_args': {'split': {'LS': 'valid_and_test'}, 'order': 'TO', 'mode': 'full',
                    'group_by': 'user'},
      'metrics': ['Hit', 'NDCG'], 'topk': [10], 'valid_metric': 'NDCG@10',
      'eval_batch_size': 4096, 'stopping_step': args.patience, 'eval_step': 1,
  }
  config = Config(model='SASRec', config_dict=settings)
  init_seed(config['seed'], config['reproducibility'])
  dataset = create_dataset(config)
  train_data, valid_data, test_data = data_preparation(config, dataset)
  model = SASRec(config, train_data._dataset).to('cpu')
  trainer = Trainer(config, model)
  result = {'train_examples': len(train_data._dataset), 'threads': torch.get_num_threads(),
            'torch': torch.__version__, 'users': dataset.user_num - 1,
            'items': dataset.item_num - 1, 'interactions': len(dataset.inter_feat)}
  if args.steps:
    model.train()
    step_times, batches = [], iter(train_data)
    for _ in range(args.steps + 2):  # 2 warm-up steps
      start = time.perf_counter()
      interaction = next(batches).to('cpu')
      trainer.optimizer.zero_grad()
      loss = model.calculate_loss(interaction)
      loss.backward()
      trainer.optimizer.step()
      step_times.append(time.perf_counter() - start)
    result['step_seconds'] = step_times[2:]
    result['steps_per_epoch'] = len(train_data)
  elif not args.converge:
    times = []
    for epoch in range(args.epochs):
      start = time.perf_counter()
      loss = trainer._train_epoch(train_data, epoch, show_progress=False)
      times.append(time.perf_counter() - start)
      print(f'epoch {epoch}: {times[-1]:.1f} s, loss {float(loss):.4f}', flush=True)
    result['epoch_seconds'] = times
  else:
    start = time.perf_counter()
    trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    result['train_seconds'] = time.perf_counter() - start
    result['epochs_run'] = trainer.cur_epoch + 1 if hasattr(trainer, 'cur_epoch') else None
    result['best_valid'] = {k: float(v) for k, v in (trainer.best_valid_result or {}).items()}
    test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    result['test'] = {k: float(v) for k, v in test.items()}
  with open(args.out, 'w') as f:
    json.dump(result, f, indent=1)
  print(json.dumps(result))


if __name__ == '__main__':
  main()
