r"""Convert pretrained ResNet, VGG or InceptionV3 weights into an orbax checkpoint +
metadata.json (which records the preprocessing the weights expect).

  python -m launch.convert --source=torchvision --arch=resnet50 \
      --input=resnet50-0676ba61.pth --output=weights/resnet50_tv
  python -m launch.convert --source=keras --arch=vgg16 \
      --input=vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 \
      --output=weights/vgg16_keras --include_top=false
  python -m launch.convert --source=torchvision --arch=inception_v3 \
      --input=inception_v3_google-0cc3c7bd.pth --output=weights/inception_v3_tv

Transfer configs then point at the output directory (transfer.convert.
load_weights). The output directory must be new or empty.
"""
import sys

from absl import flags

from common import cli
from common.errors import UserError


def _define_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_string('source', None, 'torchvision or keras.', flag_values=fv)
  flags.DEFINE_string('arch', None, 'resnet18/34/50/101/152, vgg16/19[_bn], inception_v3.',
                      flag_values=fv)
  flags.DEFINE_string('input', None, 'Weights file (.pth, .pt, .safetensors, '
                      '.h5, .weights.h5).', flag_values=fv)
  flags.DEFINE_string('output', None, 'New directory for the checkpoint.',
                      flag_values=fv)
  flags.DEFINE_integer('num_classes', None, 'Head size; default: the file\'s.',
                       flag_values=fv)
  flags.DEFINE_bool('include_top', True, 'Keep the classifier head.',
                    flag_values=fv)


def main(argv: list[str]) -> None:
  fv = cli.parse_flags(argv, _define_flags, __doc__)
  for name in ('source', 'arch', 'input', 'output'):
    if not fv[name].value:
      raise UserError(f'--{name} is required; see python -m launch.convert '
                      f'--help')
  from transfer import convert  # after flag parsing, so bad flags fail fast
  meta = convert.convert_file(fv.source, fv.input, fv.output, fv.arch,
                              num_classes=fv.num_classes,
                              include_top=fv.include_top)
  head = (f'{meta["num_classes"]}-class head' if meta['include_top']
          else 'no head')
  print(f'converted {meta["arch"]} ({meta["style"]}, {head}) to {fv.output}: '
        f'variables/, metadata.json')


if __name__ == '__main__':
  cli.main_guard(lambda: main(sys.argv))
