"""Collage domain logic: geometry, composition and a process pool (no Dagster)."""
