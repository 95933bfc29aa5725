"""The security suite: hostile catalogs, templates, trees, images and evidence (each case ends in a clear refusal)."""
