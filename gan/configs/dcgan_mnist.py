"""DCGAN on TFDS MNIST (28×28×1); needs the dataset prepared once with network access:
`pip install "advcnn[prepare]" && tfds build mnist --file_format=array_record`.

  python -m launch.gan --config=gan/configs/dcgan_mnist.py --workdir=runs/mnist
  python -m launch.gan --config=gan/configs/dcgan_mnist.py:fashion_mnist --workdir=runs/fmnist
"""
from gan.configs.base import base_config, parse_arg


def get_config(arg=None):
  name, quick = parse_arg(arg, 'mnist')
  c = base_config()
  c.data.update(name=name, batch_size=128)
  c.model.update(name='dcgan', features=64, noise_dim=100, noise='gaussian', dtype='auto')
  c.optim.update(g_lr=2e-4, d_lr=2e-4, b1=0.5)
  c.train.update(steps=20000, ema_decay=0.999, rounds_per_call=100)
  c.train.log_every = 100
  c.train.eval_every = 2000
  c.train.checkpoint_every = 2000
  if quick:
    c.data.batch_size = 16
    c.model.features = 8
    c.train.update(steps=4, rounds_per_call=2)
    c.train.log_every = c.train.eval_every = c.train.checkpoint_every = 2
    c.eval.grid_size = 16
  return c
