"""Mirrors: replicate published collection versions to other S3-compatible stores, verified and audited.

``config`` reads the targets (one YAML per target, like collections); ``sync`` copies
what a target lacks and reports what is in sync and what differs; ``audit`` runs the
fixity check on a target. No Airflow here: ``dags/mirror_targets.py`` calls these.
"""
