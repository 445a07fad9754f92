"""Sample-quality metrics for GANs, matching pytorch-fid, torch-fidelity and prdc: the FID
InceptionV3 (`inception`), Fréchet distance and its statistics (`fid`), and KID, Inception Score,
precision/recall and density/coverage on feature arrays (`feature_metrics`).
"""
