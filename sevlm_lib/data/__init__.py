"""Datasets: the ArtEmis loader, the synthetic ArtEmis-mini and torch datasets."""
