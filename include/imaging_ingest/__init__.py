"""imaging_ingest: the domain library of the imaging archive's ingest pipeline.

Every stage of an ingest (discover, claim, stage raw, inventory, plan, de-identify,
screen, verify, register, publish) is a plain function here, usable without Airflow.
The Airflow DAGs under ``dags/`` only wire these functions together.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
