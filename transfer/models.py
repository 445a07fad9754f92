"""Every transfer backbone by torchvision's arch name: ResNet, VGG and InceptionV3.

`create_model(arch, num_classes, style)` is the public constructor (exported as
`transfer.create_model`); `ARCHS` maps each arch to its family, and `FAMILIES` holds what the
rest of the package needs to know about a family: its model module, the parts freezing rules
train block by block (input to output), the smallest input, and the preprocessing of each
style's weights.

  model = create_model('vgg16', 10, style='keras', head='flatten', head_hidden=(4096, 1072),
                       head_dropout=0.2)
  logits = model.apply(variables, images, train=False)   # images NHWC float32, preprocessed
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

from common.errors import UserError, unknown_name
from transfer import heads, inception, resnet, vgg


@dataclasses.dataclass(frozen=True)
class Family:
  """What a model family shares across its archs."""
  name: str
  model: type[nn.Module]
  parts: tuple[str, ...]  # top-level parameter groups, input to output, for freezing rules
  min_size: int  # smallest input side
  trace_size: int  # input side at which `abstract_variables` traces the model
  preprocess: Mapping[str, str]  # style -> preprocessing style of that source's weights
  arch_styles: Any  # (arch, style) -> validates, raising UserError


def _inception_styles(arch: str, style: str) -> None:
  if arch != 'inception_v3':
    raise unknown_name('InceptionV3 architecture', arch, ('inception_v3',))
  inception.check_style(style)


FAMILIES = {
    'resnet': Family('resnet', resnet.ResNet, ('stem', *resnet.STAGE_NAMES), 8, 32,
                     {'torchvision': 'torchvision', 'keras': 'keras'}, resnet.arch_spec),
    'vgg': Family('vgg', vgg.VGG, vgg.BLOCK_NAMES, 32, 32,
                  {'torchvision': 'torchvision', 'keras': 'keras'}, vgg.arch_spec),
    'inception': Family('inception', inception.InceptionV3, ('stem', *inception.MIXED_NAMES),
                        inception.MIN_SIZE, inception.MIN_SIZE,
                        {'torchvision': 'torchvision', 'keras': 'tf'}, _inception_styles),
}
ARCHS: dict[str, str] = {**{a: 'resnet' for a in resnet.ARCHS}, **{a: 'vgg' for a in vgg.ARCHS},
                         'inception_v3': 'inception'}
STYLES = ('torchvision', 'keras')


def family(arch: str) -> Family:
  """The Family of `arch`, or a UserError naming the known archs."""
  if arch not in ARCHS:
    raise unknown_name('architecture', arch, ARCHS)
  return FAMILIES[ARCHS[arch]]


def check_arch(arch: str, style: str = 'torchvision') -> Family:
  """Validates (arch, style) with the family's own error messages; returns the Family."""
  fam = family(arch)
  if style not in STYLES:
    raise unknown_name('style', style, STYLES)
  fam.arch_styles(arch, style)
  return fam


def preprocess_style(arch: str, style: str) -> str:
  """The `transfer.preprocess` style of `style`'s weights for `arch` (Keras' InceptionV3: 'tf')."""
  return check_arch(arch, style).preprocess[style]


def dropout_rate(model: nn.Module) -> float:
  """The dropout rate of a model's classifier top when it trains (0: none)."""
  if not model.include_top:
    return 0.0
  if model.head is not None:
    return model.head_dropout
  own = {('vgg', 'torchvision'): 0.5, ('inception', 'torchvision'): 0.5}
  return own.get((family(model.arch).name, model.style), 0.0)


def part_rules(arch: str) -> tuple[tuple[str, str], ...]:
  """(part, path regex) of each backbone part of `arch`, input to output, for freezing rules:
  ResNet's stem ('^stem_') and stages, VGG's blocks, InceptionV3's stem and mixed blocks."""
  fam = family(arch)
  return tuple((p, '^stem_' if (fam.name, p) == ('resnet', 'stem') else f'^{p}/')
               for p in fam.parts)


def check_image_size(arch: str, size: int) -> None:
  """Refuses images too small for `arch` (InceptionV3 below 75 px) before any work."""
  fam = family(arch)
  if fam.name == 'inception':
    inception.check_size(size, size)
  elif size < fam.min_size:
    raise UserError(f'{arch} needs images of at least {fam.min_size} px, got {size}; raise '
                    f'data.image_size')


def create_model(arch: str, num_classes: int | None, style: str = 'torchvision',
                 include_top: bool = True, dtype: Any = jnp.float32, head: str | None = None,
                 head_hidden: tuple[int, ...] = (), head_dropout: float = 0.0) -> nn.Module:
  """The flax model `arch` (torchvision's names: resnet50, vgg16_bn, inception_v3, ...) in
  `style` ('torchvision' or 'keras').

  `head=None` builds the architecture's own top, the one converted weights with their
  classifier fit; 'global_pool' or 'flatten' with `head_hidden` widths and `head_dropout`
  builds a new one (`transfer.heads`). `num_classes` is ignored when include_top=False.
  """
  fam = check_arch(arch, style)
  num_classes = resnet.check_num_classes(num_classes, include_top)
  if head is not None:
    heads.check_head(head, head_hidden, head_dropout)
  return fam.model(arch, num_classes, style, include_top, dtype, head, tuple(head_hidden),
                   float(head_dropout))


def model_for(config: Any, num_classes: int) -> nn.Module:
  """The model a transfer config trains: the weights' own top with `model.include_top`, else a
  new head as `model.head`, `model.head_hidden` and `model.head_dropout` say."""
  m = config.model
  if m.include_top:
    return create_model(m.arch, num_classes, m.style)
  return create_model(m.arch, num_classes, m.style, head=m.head,
                      head_hidden=tuple(m.head_hidden), head_dropout=m.head_dropout)


def abstract_variables(arch: str, style: str = 'torchvision', num_classes: int | None = None,
                       include_top: bool = True, head: str | None = None,
                       head_hidden: tuple[int, ...] = (), image_size: int | None = None
                       ) -> dict[str, Any]:
  """{'params', 'batch_stats'} of `create_model(...)` as jax.ShapeDtypeStructs.

  Traces without computing; cached, so treat the result as read-only. `head=None` is the arch's
  own top; Keras' VGG top is traced at 224 px, the only size its flattened classifier fits, and
  a 'flatten' head at `image_size` (its width depends on it).
  """
  create_model(arch, num_classes, style, include_top, head=head, head_hidden=head_hidden)
  variables = _traced_variables(arch, style, num_classes if include_top else 1, head,
                                tuple(head_hidden), image_size)
  if include_top:
    return variables
  params = {k: v for k, v in variables['params'].items() if not heads.is_top(k)}
  return {**variables, 'params': params}


@functools.lru_cache(maxsize=32)
def _traced_variables(arch: str, style: str, num_classes: int, head: str | None,
                      head_hidden: tuple[int, ...], image_size: int | None) -> dict[str, Any]:
  fam = family(arch)
  size = image_size or fam.trace_size
  if head is None and fam.name == 'vgg' and style == 'keras':
    size = 224
  model = create_model(arch, num_classes, style, head=head, head_hidden=head_hidden)
  variables = jax.eval_shape(model.init, jax.random.key(0),
                             jnp.zeros((1, size, size, 3), jnp.float32))
  return {'params': variables['params'], 'batch_stats': variables.get('batch_stats', {})}


def param_paths(tree: Mapping[str, Any]) -> list[str]:
  """'/'-joined leaf paths of a params (or batch_stats) tree, e.g. 'block5/conv3/kernel'.

  Freezing rules match regexes against these.
  """
  return ['/'.join(k) for k in traverse_util.flatten_dict(tree)]
