"""Inventory: one header-only read per file, and files that share a SOP Instance UID."""
