"""vrfam_rt.training: datasets, losses and trainers that produce checkpoints and bundles."""
