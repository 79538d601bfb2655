"""Evaluation: features (one extraction loop), protocols (trials), metrics (vectorised)."""
