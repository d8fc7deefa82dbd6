"""Runtime settings of one installation: where the catalog, the object store and the work area are.

Collection configs (``config.py``) say *what* to ingest; these settings say *where* the
archive lives. They come from the environment so that the same code runs on a laptop
(SQLite, a loopback S3), in CI and in production (PostgreSQL, S3 or MinIO). Airflow
deployments may fill them from Connections and Variables instead (see ``dags/``).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Settings", "TIERS", "Tier"]

Tier = str
#: The storage tiers, in the order data flows through them.
TIERS: tuple[str, ...] = ("raw", "staging", "quarantine", "public", "restricted")


class Settings(BaseModel):
    """Where one installation keeps its state."""

    model_config = ConfigDict(frozen=True)

    home: Path = Field(description="Local work area: caches, the default SQLite catalog, reports.")
    catalog_url: str = Field(description="SQLAlchemy URL of the catalog database.")
    s3_endpoint: str | None = Field(default=None, description="S3 endpoint URL; None means AWS.")
    s3_region: str = "us-east-1"
    bucket_prefix: str = Field(default="imaging", pattern=r"^[a-z0-9][a-z0-9.-]{1,40}$")

    def bucket(self, tier: Tier) -> str:
        """The bucket that holds one tier."""
        if tier not in TIERS:
            raise ValueError(f"unknown storage tier {tier!r}; expected one of {', '.join(TIERS)}")
        return f"{self.bucket_prefix}-{tier}"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Read ``IMAGING_INGEST_*`` variables, with embedded defaults for a single machine."""
        env = os.environ if environ is None else environ
        home = Path(env.get("IMAGING_INGEST_HOME", str(Path.cwd() / ".imaging-ingest"))).expanduser().resolve()
        return cls(
            home=home,
            catalog_url=env.get("IMAGING_INGEST_CATALOG_URL", f"sqlite:///{home / 'catalog.sqlite'}"),
            s3_endpoint=env.get("IMAGING_INGEST_S3_ENDPOINT") or None,
            s3_region=env.get("IMAGING_INGEST_S3_REGION", "us-east-1"),
            bucket_prefix=env.get("IMAGING_INGEST_BUCKET_PREFIX", "imaging"),
        )
