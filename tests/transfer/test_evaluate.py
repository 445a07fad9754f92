"""Classification metrics: top-5 only where it can miss, and the files evaluation writes."""
import numpy as np
from PIL import Image

from transfer import evaluate


def test_top5_is_reported_only_with_more_than_5_classes():
  labels = np.array([0, 1, 2, 3, 4])
  logits = np.eye(5)[[1, 1, 2, 0, 0]]  # right for samples 1 and 2 only
  m = evaluate.classification_metrics(logits, labels, 5)
  assert m['top1'] == 0.4 and m['top5'] is None  # every label is in a 5-class top 5


def test_top5_counts_labels_among_the_5_highest_logits():
  labels = np.array([0, 6, 3])
  logits = np.tile(np.arange(7, 0, -1, dtype=float), (3, 1))  # ranks 0 > 1 > ... > 6
  m = evaluate.classification_metrics(logits, labels, 7)
  assert m['top1'] == 1 / 3 and m['top5'] == 2 / 3  # class 6 is 7th, class 3 is 4th


def test_confusion_png_is_saved_at_150_dpi(tmp_path):
  path = tmp_path / 'images' / 'confusion.png'
  evaluate.save_confusion_png(str(path), np.array([[3, 1], [0, 4]]), ['a', 'b'])
  dpi = Image.open(path).info['dpi']
  assert min(dpi) >= 149.5
