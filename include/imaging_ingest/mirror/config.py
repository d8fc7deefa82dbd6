"""Mirror targets: one YAML file per target in a folder, validated like collection configs.

```yaml
id: offsite                      # the DAG is mirror__offsite; must match the file name
title: Off-site copy at a partner data commons
endpoint: https://s3.partner.example.org   # S3-compatible endpoint (omit for AWS)
region: us-east-1
bucket: imaging-mirror
restricted: false                # true only for a store cleared for restricted collections
collections: []                  # empty: every collection the target may hold
access_key_env: MIRROR_OFFSITE_KEY_ID       # names of environment variables, never the keys
secret_key_env: MIRROR_OFFSITE_SECRET
schedule: "30 4 * * *"           # optional cron, besides the collections' publish Assets
paused: true                     # new DAG starts paused (until the endpoint exists)
```

Strings may use ``${VAR}`` and ``${VAR:-default}``. A restricted collection is never
copied to a target without ``restricted: true``: the sync refuses it, whatever
``collections`` lists.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["LoadedTargets", "MirrorConfigError", "MirrorTarget", "load_mirror_target", "load_mirror_targets"]


class MirrorTarget(BaseModel):
    """Where one mirror lives and what it may hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,47}$", description="Target id; the DAG is mirror__<id>.")
    title: str = ""
    endpoint: str | None = Field(default=None, description="S3 endpoint URL; None means AWS.")
    region: str = "us-east-1"
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    restricted: bool = Field(default=False, description="May hold restricted collections.")
    collections: list[str] = Field(default_factory=list, description="Collections to mirror; empty: all allowed.")
    access_key_env: str | None = Field(default=None, description="Environment variable holding the access key id.")
    secret_key_env: str | None = Field(default=None, description="Environment variable holding the secret key.")
    schedule: str | None = Field(default=None, description="Cron expression, besides the publish Assets.")
    paused: bool = Field(default=False, description="The DAG starts paused.")
    workers: int = Field(default=8, ge=1, le=64, description="Concurrent copies.")

    @field_validator("endpoint")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://", value):
            raise ValueError("must be an http:// or https:// URL")
        return value or None

    @property
    def dag_id(self) -> str:
        return f"mirror__{self.id}"

    def wants(self, collection_id: str) -> bool:
        return not self.collections or collection_id in self.collections

    def credentials(self, environ: dict[str, str] | None = None) -> dict[str, str]:
        """boto3 keyword arguments for the target's keys (read from the named variables at run time)."""
        env = os.environ if environ is None else environ
        if not self.access_key_env:
            return {}
        missing = [n for n in (self.access_key_env, self.secret_key_env) if not n or n not in env]
        if missing:
            raise ValueError(f"mirror target {self.id}: environment variable {missing[0]} is not set")
        return {"aws_access_key_id": env[self.access_key_env], "aws_secret_access_key": env[str(self.secret_key_env)]}


class MirrorConfigError(ValueError):
    """A target file that cannot be used; the message names the file and the fields."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(value: Any, environ: dict[str, str]) -> Any:
    if isinstance(value, str):
        def repl(match: re.Match[str]) -> str:
            if match[1] in environ:
                return environ[match[1]]
            if match[2] is not None:
                return match[2]
            raise KeyError(match[1])

        return _ENV.sub(repl, value)
    if isinstance(value, dict):
        return {k: _expand(v, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, environ) for v in value]
    return value


def load_mirror_target(path: str | Path, environ: dict[str, str] | None = None) -> MirrorTarget:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise MirrorConfigError(path, [f"cannot read: {exc}"]) from None
    if not isinstance(raw, dict):
        raise MirrorConfigError(path, ["expected a mapping at the top level"])
    try:
        raw = _expand(raw, dict(os.environ if environ is None else environ))
        target = MirrorTarget.model_validate(raw)
    except KeyError as exc:
        raise MirrorConfigError(path, [f"environment variable {exc.args[0]} is not set and has no default"]) from None
    except ValidationError as exc:
        problems = [f"field '{'.'.join(map(str, e['loc'])) or '(top level)'}': {e['msg']}" for e in exc.errors()]
        raise MirrorConfigError(path, problems) from None
    if target.id != path.stem.replace("-", "_"):
        raise MirrorConfigError(path, [f"field 'id': {target.id!r} must match the file name"])
    return target


@dataclass(frozen=True)
class LoadedTargets:
    targets: list[MirrorTarget]
    errors: list[MirrorConfigError]


def load_mirror_targets(folder: str | Path) -> LoadedTargets:
    """Every target in a folder; a bad file is reported and never hides the others."""
    folder = Path(folder)
    targets: list[MirrorTarget] = []
    errors: list[MirrorConfigError] = []
    files = sorted(p for p in folder.glob("*.y*ml") if p.suffix in {".yaml", ".yml"}) if folder.is_dir() else []
    for file in files:
        try:
            targets.append(load_mirror_target(file))
        except MirrorConfigError as exc:
            errors.append(exc)
    return LoadedTargets(targets, errors)
