"""The event contract: Avro schemas (*.avsc) shipped as package data."""
from pathlib import Path

SCHEMA_DIR = Path(__file__).parent
