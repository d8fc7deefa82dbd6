"""Building blocks every stage uses: records, checksums, gates, needles, reasons, secrets."""
