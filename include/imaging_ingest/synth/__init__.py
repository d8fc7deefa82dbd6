"""Synthetic, deliberately PHI-laden submissions for tests and the demo."""
