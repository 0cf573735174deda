"""Ximilar visual-search index of the pilot brands (domain modules; the asset is in assets.py)."""
