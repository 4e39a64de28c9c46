"""The public checkpoints users already have, read into bundles, exactly: `checkpoints`
(rosinality's StyleGAN2, e4e and pSp encoders, latent-transformer, IR-SE50 ArcFace:
torch.save files, read with weights_only) and `nvidia_pickles` (NVIDIA's StyleGAN2
network pickles, read by a restricted unpickler that runs none of their code)."""
