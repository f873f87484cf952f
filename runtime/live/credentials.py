"""API keys for a venue: from the environment (TAPE_<VENUE>_API_KEY, _SECRET, _PASSWORD) or a credentials file.

They are handed to ccxt and nowhere else: no event, snapshot, read model or error message holds them, and every
error text the adapter writes has them masked (handlers/venues/ccxt/errors.py `one_line`).
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from schemas.errors import TapeError


class CredentialsError(TapeError):
    """Credentials missing or unreadable; the message never contains a key."""


@dataclass(frozen=True)
class Credentials:
    api_key: str
    secret: str
    password: str | None = None

    def __repr__(self) -> str:  # never printed, even by a debugger or a traceback
        return "Credentials(***)"

    def values(self) -> tuple[str, ...]:
        """Every secret value, to mask in any text that leaves the process."""
        return tuple(v for v in (self.api_key, self.secret, self.password) if v)


def load_credentials(venue: str, path: Path | None = None) -> Credentials:
    """The venue's keys: a credentials file ([<venue>] api_key/secret/password) when given, else the environment."""
    env = venue.upper()
    if path is not None:
        try:
            table = tomllib.loads(path.read_text(encoding="utf-8")).get(venue.lower()) or {}
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise CredentialsError(f"credentials file {path}: cannot read it ({type(e).__name__}); fix the file "
                                   "(TOML, a [venue] table with api_key and secret)") from None
        key, secret, password = table.get("api_key"), table.get("secret"), table.get("password")
        where = f"credentials file {path} [{venue.lower()}]"
    else:
        key, secret = os.environ.get(f"TAPE_{env}_API_KEY"), os.environ.get(f"TAPE_{env}_SECRET")
        password = os.environ.get(f"TAPE_{env}_PASSWORD")
        where = f"TAPE_{env}_API_KEY and TAPE_{env}_SECRET"
    if not key or not secret:
        raise CredentialsError(f"no API key for {venue}: set {where} (or pass --credentials FILE)")
    return Credentials(str(key), str(secret), str(password) if password else None)
