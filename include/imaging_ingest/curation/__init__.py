"""Curators in the loop: the quarantine queue, its evidence and decisions."""
