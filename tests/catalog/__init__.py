"""Catalog, versions, citations and fixity tests."""
