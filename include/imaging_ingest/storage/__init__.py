"""Tiered object storage: the object store, the tiers' policies, and storage initialisation."""
