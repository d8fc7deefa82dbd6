"""The ingest\x27s stages, one module per stage (or group of small ones), mixed into ``Ingest``."""
