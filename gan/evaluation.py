"""Sample-quality metrics of image GANs, during a run and on a finished run's checkpoint.

Metrics (`eval.metrics`, `launch.evaluate --metrics`; registry `METRICS`):
  fid   Fréchet distance to the dataset's reference statistics
  kid   kernel inception distance (mean and std over subsets)
  is    Inception Score of the feature network's class probabilities
  pr    improved precision and recall (k=3)
  dc    density and coverage (Naeem et al. 2020, k=5)
  cas   conditional digits runs: `cas_label_acc`, share of samples that the real-data digits
        classifier labels as the class they were drawn for; `cas`, held-out accuracy of a
        logistic regression on pixels trained on generated samples only (Ravuri & Vinyals 2019),
        next to `cas_real`, the same classifier trained on the real train split;
        `cas_classifier_acc`, the digits classifier's own held-out accuracy.

Features: digits runs use the digits CNN of `gan.feature_net` and report `fid_digits`,
`kid_digits`, ... (not comparable with Inception numbers); TFDS image runs use the FID
InceptionV3 from weights the user names (`eval.inception_weights`). Reference statistics are
computed once and cached under `cache_root()/reference/`, keyed by dataset, split and feature
network. The GAN configs train on all 1,797 digits, so the held-out digits of `cas` were seen by
the generator (not by the classifiers).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Callable, Iterable

import jax
import ml_collections
import numpy as np

from common import distributed
from common.metrics import feature_metrics as fm
from common.metrics import fid as fid_lib
from common.errors import UserError, unknown_name
from gan import conditional, feature_net, images

INCEPTION_FILE = "pytorch-fid's pt_inception-2015-12-05-6726825d.pth"
REFERENCE_FEATURES = 10_000  # real images kept as features for KID and precision/recall
SAMPLE_BATCH = 500
PR_K = 3
DC_K = 5
FEATURE_NETS = ('inception', 'digits')


@dataclasses.dataclass(frozen=True)
class FeatureNet:
  """images [N, H, W, C] in [-1, 1] -> (features [N, dim], class probabilities [N, K])."""
  name: str  # recorded in statistics files
  suffix: str  # appended to metric names: '_digits' or ''
  dim: int
  apply: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


# ---- what a run can measure ----------------------------------------------------------------

def parse_metrics(value: str | Iterable[str] | None) -> list[str]:
  """'fid,kid' or ['fid', 'kid'] (or a mix, as config overrides give) -> known names, in order."""
  if value is None:
    return []
  if isinstance(value, str):
    value = [value]
  words = [w for v in value for w in str(v).split(',')]
  names = []
  for w in (w.strip() for w in words):
    if w and w not in names:
      if w not in METRICS:
        raise unknown_name('metric', w, METRICS)
      names.append(w)
  return names


def uses_digits_net(config: ml_collections.ConfigDict) -> bool:
  """Digits at their own 8x8 size are measured with the digits CNN; everything else (digits
  resized too) with the FID InceptionV3."""
  return config.data.name == 'digits' and images.image_size(config.data) in (0, 8)


def feature_dim(config: ml_collections.ConfigDict) -> int:
  if uses_digits_net(config):
    return feature_net.RECIPE['feature_dim']
  from common.metrics import inception
  return inception.POOL_DIM


def feature_net_name(config: ml_collections.ConfigDict) -> str:
  """The name statistics files record for the run's feature network (known before training it)."""
  if uses_digits_net(config):
    return feature_net.net_name()
  from common.metrics import inception
  return inception.FEATURE_NET


def check_metrics(config: ml_collections.ConfigDict, metrics: list[str], num_samples: int,
                  inception_weights: str = '', reference_stats_path: str = '') -> None:
  """Everything that can be checked before any work: a one-line UserError for each problem."""
  if not metrics:
    return
  name = config.data.name
  if name not in images.IMAGE_DATASETS:
    raise UserError(f'eval.metrics {",".join(metrics)} measure image GANs, not {name!r} points; '
                    'leave eval.metrics empty (2D runs report kl, js and modes)')
  if not uses_digits_net(config):
    if not inception_weights:
      raise UserError(f'metrics on {name} need the FID InceptionV3 weights: pass '
                      f'--config.eval.inception_weights=PATH ({INCEPTION_FILE}; launch.evaluate: '
                      '--inception_weights=PATH)')
    if not os.path.isfile(inception_weights):
      raise UserError(f'inception weights {inception_weights} not found; pass the path of '
                      f'{INCEPTION_FILE}')
  if 'cas' in metrics and not (uses_digits_net(config) and config.model.get('num_classes', 0) > 0):
    raise UserError("metric 'cas' needs a conditional digits run (data.name=digits, "
                    "model.num_classes=10); drop cas from the metrics")
  dim = feature_dim(config)
  need = max(_MIN_SAMPLES[m](dim) for m in metrics)
  if num_samples < need:
    why = (f'a full-rank {dim}x{dim} feature covariance (fid) needs {dim + 1}' if 'fid' in metrics
           else f'{",".join(metrics)} need {need}')
    raise UserError(f'{num_samples} samples are too few: {why}; use num_samples >= {need}')
  if reference_stats_path:  # another network's statistics would give a meaningless FID
    fid_lib.load_stats(reference_stats_path, expected_feature_net=feature_net_name(config))


_MIN_SAMPLES = {
  'fid': lambda dim: dim + 1,
  'kid': lambda dim: 2,
  'is': lambda dim: 10,  # one sample per split at least
  'pr': lambda dim: PR_K + 1,
  'dc': lambda dim: DC_K + 1,
  'cas': lambda dim: 2 * feature_net.NUM_CLASSES,
}


def create_feature_net(config: ml_collections.ConfigDict, inception_weights: str = ''
                       ) -> FeatureNet:
  """The digits CNN (trained and cached on first use) or the FID InceptionV3, as the run needs."""
  return feature_net_by_name('digits' if uses_digits_net(config) else 'inception',
                             inception_weights)


def feature_net_by_name(name: str, inception_weights: str = '') -> FeatureNet:
  """'digits': the digits CNN (8x8 grey images); 'inception': the FID InceptionV3 from
  pytorch-fid's weights file `inception_weights`."""
  if name not in FEATURE_NETS:
    raise unknown_name('feature network', name, FEATURE_NETS)
  if name == 'digits':
    net = feature_net.digits_net()

    def apply_digits(x):
      feats, logits = net.features_and_logits(x)
      return feats, np.asarray(jax.nn.softmax(logits))

    return FeatureNet(net.name, '_digits', net.dim, apply_digits)
  from common.metrics import inception
  if not inception_weights:
    raise UserError(f'Inception features need the FID InceptionV3 weights: pass '
                    f'--inception_weights=PATH ({INCEPTION_FILE})')
  variables = inception.convert_pytorch_fid(inception_weights)

  def apply_inception(x):
    feats, logits = inception.fid_features(variables, (np.asarray(x) + 1) / 2, return_logits=True)
    return feats, np.asarray(jax.nn.softmax(logits))

  return FeatureNet(inception.FEATURE_NET, '', inception.POOL_DIM, apply_inception)


# ---- reference statistics ----------------------------------------------------------------

def reference_split(config: ml_collections.ConfigDict) -> str:
  """The split the GAN trains on ('all' for digits and folders)."""
  return images.train_split(config.data, config.model.get('num_classes', 0) > 0)


def reference_paths(dataset: str, split: str, net_name: str) -> tuple[str, str]:
  """(statistics .npz, features .npz) in the cache for one dataset key (`images.dataset_key`),
  split and feature net."""
  stem = os.path.join(feature_net.cache_root(), 'reference', f'{dataset}-{split}-{net_name}')
  return f'{stem}.npz', f'{stem}-features.npz'


def _real_images(config: ml_collections.ConfigDict):
  """Yields the training images [b, H, W, C] in [-1, 1], in order, in chunks."""
  src, _ = images.image_source(config.data, config.model.get('num_classes', 0) > 0)
  for start in range(0, len(src), 1000):
    yield src.gather(np.arange(start, min(start + 1000, len(src))))['image']


def _compute_reference(config: ml_collections.ConfigDict, net: FeatureNet, split: str) -> None:
  """One pass over the split: statistics of all images, features of a fixed subset."""
  acc = fid_lib.StatsAccumulator()
  feats = []
  for x in _real_images(config):
    f, _ = net.apply(x)
    acc.update(f)
    feats.append(f.astype(np.float32))
  feats = np.concatenate(feats)
  if len(feats) > REFERENCE_FEATURES:
    keep = np.sort(np.random.default_rng(0).permutation(len(feats))[:REFERENCE_FEATURES])
    feats = feats[keep]
  mu, sigma = acc.result()
  key = images.dataset_key(config.data)
  stats_path, feats_path = reference_paths(key, split, net.name)
  os.makedirs(os.path.dirname(stats_path), exist_ok=True)
  tmp = f'{feats_path}.tmp{os.getpid()}'
  with open(tmp, 'wb') as f:
    np.savez(f, features=feats, feature_net=np.str_(net.name))
  os.replace(tmp, feats_path)
  fid_lib.save_stats(stats_path, fid_lib.FeatureStats(mu, sigma, net.name, key, split,
                                                      acc.count))


def reference_stats(config: ml_collections.ConfigDict, net: FeatureNet,
                    path: str = '') -> fid_lib.FeatureStats:
  """The user's statistics file `path`, else the cached ones (computed on first use); either is
  refused unless it was made with `net`."""
  if path:
    return fid_lib.load_stats(path, expected_feature_net=net.name)
  split = reference_split(config)
  stats_path, _ = reference_paths(images.dataset_key(config.data), split, net.name)
  if not os.path.exists(stats_path):
    _compute_reference(config, net, split)
  return fid_lib.load_stats(stats_path, expected_feature_net=net.name)


def reference_features(config: ml_collections.ConfigDict, net: FeatureNet) -> np.ndarray:
  """Features [M, D] of up to REFERENCE_FEATURES real images (cached like the statistics)."""
  split = reference_split(config)
  _, feats_path = reference_paths(images.dataset_key(config.data), split, net.name)
  if not os.path.exists(feats_path):
    _compute_reference(config, net, split)
  with np.load(feats_path, allow_pickle=False) as data:
    if str(data['feature_net']) != net.name:
      raise UserError(f'{feats_path} holds features of {str(data["feature_net"])!r}, not '
                      f'{net.name!r}; delete it to recompute')
    return data['features']


# ---- the metrics ---------------------------------------------------------------------------

@dataclasses.dataclass
class Samples:
  """Generated images [N, H, W, C] in [-1, 1], their labels [N] (conditional runs) and features."""
  images: np.ndarray
  labels: np.ndarray | None
  features: np.ndarray
  probs: np.ndarray


@dataclasses.dataclass
class Context:
  config: ml_collections.ConfigDict
  net: FeatureNet
  reference_stats_path: str = ''


def _fid(s: Samples, c: Context) -> dict[str, float]:
  ref = reference_stats(c.config, c.net, c.reference_stats_path)
  mu, sigma = fid_lib.compute_stats(s.features)
  return {f'fid{c.net.suffix}': fid_lib.frechet_distance(ref.mu, ref.sigma, mu, sigma)}


def _kid(s: Samples, c: Context) -> dict[str, float]:
  mean, std = fm.kid(reference_features(c.config, c.net), s.features)
  return {f'kid{c.net.suffix}': mean, f'kid{c.net.suffix}_std': std}


def _inception_score(s: Samples, c: Context) -> dict[str, float]:
  mean, std = fm.inception_score(s.probs)
  return {f'is{c.net.suffix}': mean, f'is{c.net.suffix}_std': std}


def _precision_recall(s: Samples, c: Context) -> dict[str, float]:
  p, r = fm.precision_recall(reference_features(c.config, c.net), s.features, k=PR_K)
  return {f'precision{c.net.suffix}': p, f'recall{c.net.suffix}': r}


def _density_coverage(s: Samples, c: Context) -> dict[str, float]:
  d, cov = fm.density_coverage(reference_features(c.config, c.net), s.features, k=DC_K)
  return {f'density{c.net.suffix}': d, f'coverage{c.net.suffix}': cov}


def _cas(s: Samples, c: Context) -> dict[str, float]:
  net = feature_net.digits_net()
  return {'cas_label_acc': float(np.mean(s.probs.argmax(-1) == s.labels)),
          **classification_accuracy_score(s.images, s.labels),
          'cas_classifier_acc': net.held_out_accuracy}


METRICS: dict[str, Callable[[Samples, Context], dict[str, float]]] = {
  'fid': _fid,
  'kid': _kid,
  'is': _inception_score,
  'pr': _precision_recall,
  'dc': _density_coverage,
  'cas': _cas,
}


def _pixel_classifier_accuracy(x_train: np.ndarray, y_train: np.ndarray) -> float:
  """Held-out digits accuracy of a logistic regression on pixels trained on (x_train, y_train)."""
  from sklearn.linear_model import LogisticRegression
  x, y = images.digits_arrays()
  _, test = feature_net.digits_split()
  clf = LogisticRegression(max_iter=2000)
  clf.fit(x_train.reshape(len(x_train), -1), y_train)
  return float(clf.score(x[test].reshape(len(test), -1), y[test]))


@functools.lru_cache(maxsize=1)
def _real_pixel_classifier_accuracy() -> float:
  x, y = images.digits_arrays()
  train, _ = feature_net.digits_split()
  return _pixel_classifier_accuracy(x[train], y[train])


def classification_accuracy_score(fake: np.ndarray, labels: np.ndarray) -> dict[str, float]:
  """CAS on digits: {'cas': trained on fake [N, 8, 8, 1] with labels [N], 'cas_real': trained on
  the real train split}, both tested on the real held-out split."""
  if len(np.unique(labels)) < 2:
    raise UserError('CAS needs samples of at least two classes; use more samples')
  return {'cas': _pixel_classifier_accuracy(np.asarray(fake), np.asarray(labels)),
          'cas_real': _real_pixel_classifier_accuracy()}


def compute_metrics(context: Context, metrics: list[str], fake: np.ndarray,
                    labels: np.ndarray | None = None) -> dict[str, float]:
  """The named metrics of generated images fake [N, H, W, C] in [-1, 1] (and their labels [N]
  in conditional runs)."""
  feats, probs = context.net.apply(fake)
  samples = Samples(np.asarray(fake), None if labels is None else np.asarray(labels), feats, probs)
  out = {}
  for m in metrics:
    out.update(METRICS[m](samples, context))
  return out


def real_vs_real(config: ml_collections.ConfigDict, net: FeatureNet, seed: int = 0,
                 kid_subsets: int = 100) -> dict[str, float]:
  """The floor of FID/KID/precision/recall: two disjoint random halves of the real images."""
  x = np.concatenate(list(_real_images(config)))
  perm = np.random.default_rng(seed).permutation(len(x))
  a, b = (net.apply(x[idx])[0] for idx in np.array_split(perm, 2))
  p, r = fm.precision_recall(a, b, k=PR_K)
  sfx = net.suffix
  fid = fid_lib.frechet_distance(*fid_lib.compute_stats(a), *fid_lib.compute_stats(b))
  return {f'fid{sfx}': fid, f'kid{sfx}': fm.kid(a, b, num_subsets=kid_subsets)[0],
          f'precision{sfx}': p, f'recall{sfx}': r, 'half_size': len(b)}


def floor_line(summary: dict) -> str | None:
  """'quality: fid_digits 5.12 (real-vs-real floor 3.81), ...' for the metrics in `summary`
  that have a floor (gan.evaluator.Evaluator.floor); None when none has."""
  parts = [f'{k} {summary[k]:.3g} (real-vs-real floor {summary["floor_" + k]:.3g})'
           for k in sorted(summary) if f'floor_{k}' in summary]
  return 'quality: ' + ', '.join(parts) if parts else None


# ---- sampling and the workdir ------------------------------------------------------------

def generate(steps, g_vars: dict, key: jax.Array, n: int
             ) -> tuple[np.ndarray, np.ndarray | None]:
  """n samples from `steps.sample` (a GanSteps) in fixed-size batches so it compiles once;
  conditional runs draw every class equally often. Returns (images, labels or None)."""
  b = min(SAMPLE_BATCH, n)
  calls = math.ceil(n / b)
  labels = conditional.balanced_labels(calls * b, steps.num_classes) if steps.conditional else None
  out = []
  for i in range(calls):
    y = None if labels is None else labels[i * b:(i + 1) * b]
    out.append(distributed.to_host(steps.sample(g_vars, jax.random.fold_in(key, i), b, y)))
  return np.concatenate(out)[:n], None if labels is None else np.asarray(labels[:n])
