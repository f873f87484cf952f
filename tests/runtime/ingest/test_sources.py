"""Opening history files: plain, gzip and zip told by their bytes (runtime.ingest.sources)."""
from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import pytest

from runtime.ingest.csvrows import IngestError
from runtime.ingest.sources import file_sha256, open_source, source_lines

TEXT = "\ufefftime,price,qty\n1,1,1\n2,1,1\n"


def read(path: Path) -> list[str]:
    source = open_source(path)
    with source_lines(source) as lines:
        return list(lines)


def test_plain_gzip_and_zip_read_the_same_lines_even_renamed(tmp_path):
    plain = tmp_path / "a.csv"
    plain.write_text(TEXT)
    gz = tmp_path / "b.dat"  # a gzip file without .gz
    gz.write_bytes(gzip.compress(TEXT.encode()))
    zipped = tmp_path / "c.bin"
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("inner/c.csv", TEXT)
    expected = ["time,price,qty\n", "1,1,1\n", "2,1,1\n"]  # the BOM dropped
    assert read(plain) == read(gz) == read(zipped) == expected
    assert [open_source(p).compression for p in (plain, gz, zipped)] == ["none", "gzip", "zip"]
    assert open_source(zipped).label == "c.bin (inner/c.csv)" and open_source(gz).label == "b.dat"
    assert open_source(zipped).size == len(TEXT.encode())


def test_zip_picks_the_one_csv_among_other_files(tmp_path):
    zipped = tmp_path / "k.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("README", "x")
        z.writestr("k.CSV", TEXT)
    assert open_source(zipped).member == "k.CSV"


def test_refusals(tmp_path):
    with pytest.raises(IngestError, match="none.csv: no such file"):
        open_source(tmp_path / "none.csv")
    bad_zip = tmp_path / "bad.zip"
    bad_zip.write_bytes(b"PK\x03\x04" + b"\0" * 10)
    with pytest.raises(IngestError, match=r"^bad.zip: not a readable zip archive"):
        open_source(bad_zip)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("time,price,qty\n1,1,1\n2,1,1 \xe9\n".encode("latin-1"))
    with pytest.raises(IngestError, match=r"^latin.csv line 3: not UTF-8 text; save the file as UTF-8$"):
        read(latin)


def test_progress_counts_bytes_of_the_file_on_disk(tmp_path):
    path = tmp_path / "big.csv.gz"
    text = "time,price,qty\n" + "".join(f"{i},1,1\n" for i in range(1, 50_000))
    path.write_bytes(gzip.compress(text.encode()))
    seen: list[int] = []
    with source_lines(open_source(path), seen.append) as lines:
        assert sum(1 for _ in lines) == 50_000
    assert seen[-1] == path.stat().st_size and seen == sorted(seen)
    assert len(file_sha256(path)) == 64
