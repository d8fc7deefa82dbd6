"""The ingest run: stages, reruns, quarantine and the reports a run leaves behind."""
