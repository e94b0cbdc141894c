"""The embedded world: OpenMoji glyph scenes that need no download (a synthetic dataset)."""
