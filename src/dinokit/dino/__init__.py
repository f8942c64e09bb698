"""The DINO method as building blocks (Caron et al., 2021, facebookresearch/dino)."""
