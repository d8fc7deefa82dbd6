"""Airflow wiring for the imaging_ingest library (not parsed as DAG files: see .airflowignore)."""
