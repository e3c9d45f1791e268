"""vaegen_utils: the thin library behind the vaegen notebooks.

Modules (import what you need; nothing heavy happens at import time):
  paths        repository-rooted folders (data, cache, figures, build)
  io           atomic writes: nothing half-written is ever read back
  profiles     the one PROFILE switch (smoke / cpu / paper)
  seeding      set_seed and explicit torch generators
  data         MNIST, Fashion-MNIST, CIFAR-10 with checksummed download and offline sources
  likelihoods  Bernoulli, discretized logistic, mixture of logistics, fixed-variance Gaussian
  models       config dataclasses, MLP / conv / residual-conv VAEs, save and load
  ensemble     several same-shape VAEs trained at once (MLP: stacked weights + bmm; CNN: grouped conv)
  estimators   beta-ELBO, IWAE, per-data-point optimal posterior, encoder retraining
  training     the training engine (in-memory batches, checkpoints, resume, NaN guard)
  cache        result cache keyed by the full config
  zhang2022    paper B's experiments (checkpoints, optimal inference, self-consistent training)
  bozkurt2021  paper C's experiments (beta-sweep ensembles on Tetrominoes splits, RD curves, MI)
  figures      savefig: PNG + PDF into figures/
  results      figures/<notebook>.json with config, versions, commit and claims
  report       figures/REPORT.md and the README gallery from every results file
  checked_arrays  .npz caches verified by SHA-256
  tetrominoes  paper C's data set, its splits and nearest-neighbour distances
  diffusion    a small diffusers UNet (DDPM), deterministic DDIM/Heun sampling, a resumable sample bank
  augment      Aug.Naive / Aug.Tuned batch transforms (paper A)
  robustness   the unsupervised encoder attack, MS-SSIM and the robustness gap (paper A)
  linear_gaussian  a linear-Gaussian VAE with exact log p(x) and posterior (estimator tests)
"""

__version__ = "0.1.0"
