"""Building blocks every stage uses (records, manifests, checksums, gates, quarantine reasons)."""
