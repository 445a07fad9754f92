"""Transfer learning: `train_and_evaluate(config, workdir)`, the entry of `launch.transfer`.

A config with `ablation.modes` runs every mode x seed (transfer.ablation); otherwise it is one
run (transfer.loop), whose `model.weights='pretrain'` is the embedded source model, trained once
by transfer.pretrain.
"""
from __future__ import annotations

import ml_collections

from transfer import ablation, pretrain
from transfer import loop as loop_lib


def validate(config: ml_collections.ConfigDict) -> None:
  """Reject bad values of the run or ablation in `config` before any work (one-line UserError)."""
  if config.ablation.modes:
    ablation.validate(config)
  else:
    loop_lib.validate(config)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Train (or resume) the run or ablation in `config`, writing the workdir contract; returns
  the summary."""
  if config.ablation.modes:
    return ablation.run_ablation(config, workdir)
  return loop_lib.run(config, workdir, lambda: pretrain.source_weights(config, workdir))[0]
