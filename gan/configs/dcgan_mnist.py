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
  c.train.update(steps=20000, g_lr=2e-4, d_lr=2e-4, b1=0.5, ema_decay=0.999, rounds_per_call=100)
  c.log_every = 100
  c.eval_every = 2000
  c.checkpoint_every = 2000
  if quick:
    c.data.batch_size = 16
    c.model.features = 8
    c.train.update(steps=4, rounds_per_call=2)
    c.log_every = c.eval_every = c.checkpoint_every = 2
    c.eval.grid_size = 16
  return c
