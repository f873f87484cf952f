"""Config files at the edge: read once (TOML, or JSON by the .json suffix) and parsed into the handlers' typed configs.

Numbers stay exact (Decimal, never float). A file that cannot be read or parsed is one line naming the file and
the fix; a bad key or value is the parser's one line, naming the file too. The handlers never open a file.

A risk file may hold a `[queue]` table: the outbound queue's own settings, parsed by the queue, kept in the same
file because an operator sets them together.
"""
from __future__ import annotations

import json
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

from handlers.incidents.config import IncidentConfig, parse_incident_config
from handlers.queue import QueueConfig, parse_queue_config
from handlers.risk.limits import RiskLimits, parse_risk_config
from handlers.venues.sim.config import VenueConfig, parse_venue_config
from schemas.errors import TapeError


class ConfigFileError(TapeError):
    """A config file that cannot be read or is not valid TOML/JSON."""


def read_config(path: Path, what: str) -> dict[str, Any]:
    """The table a TOML or JSON file holds; `what` names it in errors ("risk config")."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigFileError(f"{what} {path}: no such file; check the path") from None
    except OSError as e:
        raise ConfigFileError(f"{what} {path}: cannot read it ({e.strerror}); check the path") from None
    is_json = path.suffix.lower() == ".json"
    try:
        text = raw.decode("utf-8")
        config = json.loads(text, parse_float=Decimal) if is_json else tomllib.loads(text, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        hint = "" if is_json or path.suffix.lower() == ".toml" else "; name the file .json for JSON"
        raise ConfigFileError(f"{what} {path}: not valid {'JSON' if is_json else 'TOML'} ({msg}); fix the file"
                              f"{hint}") from None
    if not isinstance(config, dict):
        raise ConfigFileError(f"{what} {path}: expected a table of settings, got {type(config).__name__}")
    return config


def risk_file(path: Path) -> tuple[RiskLimits, QueueConfig]:
    """The risk limits of a risk file, and the outbound queue's settings from its [queue] table."""
    config = read_config(path, "risk config")
    queue = config.pop("queue", {})
    return parse_risk_config(config, f"risk config {path}"), parse_queue_config(queue, f"risk config {path} [queue]")


def venue_file(path: Path) -> VenueConfig:
    """The simulated venue's settings of a venue file."""
    return parse_venue_config(read_config(path, "venue config"), f"venue config {path}")


def incident_file(path: Path) -> IncidentConfig:
    """The incident thresholds and actions of an incident file (every kind it leaves out keeps its default)."""
    return parse_incident_config(read_config(path, "incident config"), f"incident config {path}")
