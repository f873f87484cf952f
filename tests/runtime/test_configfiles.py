"""Config files at the edge: TOML or JSON read once, exact numbers, one-line errors naming the file."""
from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from runtime.configfiles import read_config, risk_file, venue_file
from schemas.errors import TapeError

D = Decimal
IID = "BTCUSDT.SIM"
RISK_EXAMPLE = """\
max_order_quantity = 5
max_order_notional = 50000
max_position = { "BTCUSDT.SIM" = 2, default = 10 }
max_gross_exposure = 100000
price_band = 0.05
max_open_orders = 20
order_rate = 10
order_rate_window = 1
daily_loss_limit = 1000
max_drawdown = 0.2
allowed_instruments = ["BTCUSDT.SIM", "ETHUSDT.SIM"]

[queue]
rate_per_second = 5
burst = 10
"""


def test_risk_file_toml_and_json(tmp_path: Path):
    p = tmp_path / "risk.toml"
    p.write_text(RISK_EXAMPLE)
    assert isinstance(read_config(p, "risk config")["price_band"], Decimal)  # exact, never float
    limits, queue = risk_file(p)
    assert limits.price_band == D("0.05") and limits.max_position_per_instrument == ((IID, D(2)),)
    assert limits.max_position == 10 and (queue.rate_per_second, queue.burst) == (5, 10)
    j = tmp_path / "risk.json"
    j.write_text(json.dumps({"max_order_notional": 1000, "price_band": 0.1}))
    limits, queue = risk_file(j)
    assert limits.price_band == D("0.1") and queue.rate_per_second is None


def test_venue_file_toml_and_json(tmp_path: Path):
    p = tmp_path / "venue.toml"
    p.write_text('name = "BT"\nstarting_balances = { USDT = "2500.5" }\nlatency_ms = 20\nmarket_fill = "same_close"\n'
                 'volume_participation = 0.25\ntaker_fee = "0.0004"\naccount_type = "margin"\nleverage = 3\n')
    vc = venue_file(p)
    assert (vc.name, vc.starting_balances, vc.latency_ns, vc.market_fill, vc.volume_participation, vc.taker_fee,
            vc.maker_fee, vc.account_type, vc.leverage) == ("BT", {"USDT": D("2500.5")}, 20_000_000, "same_close",
                                                            D("0.25"), D("0.0004"), None, "margin", D(3))
    j = tmp_path / "venue.json"
    j.write_text('{"latency_ns": 7, "volume_participation": "unlimited"}')
    vc = venue_file(j)
    assert vc.latency_ns == 7 and vc.volume_participation is None


@pytest.mark.parametrize("text, message", [
    ("max_postion = 3", "unknown key 'max_postion' (did you mean 'max_position'?)"),
    ("max_order_quantity = -1", "max_order_quantity must be a positive number"),
    ("max_order_quantity = 'lots'", "max_order_quantity must be a number"),
    ("max_open_orders = 1.5", "max_open_orders must be a whole number"),
    ("order_rate = 5000", "order_rate must be a whole number from 1 up to 1000"),
    ("order_rate_window = 2", "order_rate_window needs order_rate"),
    ("max_drawdown = 20", "max_drawdown is a fraction"),
    ("allowed_instruments = 'BTC'", "allowed_instruments must be a list"),
    ("[queue]\nrate = 3", "unknown key 'rate'"),
    ("[queue]\nburst = 0", "burst must be a whole number"),
    ("max_order_quantity = = 3", "not valid TOML"),
])
def test_bad_risk_files_give_one_line_errors(tmp_path: Path, text: str, message: str):
    p = tmp_path / "risk.toml"
    p.write_text(text)
    with pytest.raises(TapeError) as e:
        risk_file(p)
    assert message in str(e.value) and "\n" not in str(e.value) and str(p) in str(e.value)


@pytest.mark.parametrize("text,message", [
    ('colour = "red"\n', "unknown key 'colour'"),
    ('market_fill = "vwap"\n', "market_fill must be"),
    ('latency_ms = 1\nlatency_ns = 1\n', "not both"),
    ('volume_participation = 1.5\n', "volume_participation must be in (0, 1]"),
    ('starting_balances = { USDT = "lots" }\n', "starting_balances.USDT"),
    ('account_type = "prime"\n', "account_type must be"),
    ('name = \n', "not valid TOML"),
])
def test_bad_venue_files_give_one_line_errors(tmp_path: Path, text: str, message: str):
    p = tmp_path / "venue.toml"
    p.write_text(text)
    with pytest.raises(TapeError) as err:
        venue_file(p)
    assert message in str(err.value) and "\n" not in str(err.value) and str(p) in str(err.value)


def test_missing_and_unreadable_files(tmp_path: Path):
    with pytest.raises(TapeError, match="no such file; check the path"):
        risk_file(tmp_path / "nope.toml")
    with pytest.raises(TapeError, match="no such file; check the path"):
        venue_file(tmp_path / "nope.toml")
    j = tmp_path / "r.json"
    j.write_text("{nope")
    with pytest.raises(TapeError, match="not valid JSON"):
        risk_file(j)
    t = tmp_path / "v.cfg"
    t.write_text('{"latency_ns": 1}')
    with pytest.raises(TapeError, match="name the file .json for JSON"):
        venue_file(t)
    d = tmp_path / "dir.toml"
    d.mkdir()
    with pytest.raises(TapeError, match="cannot read it"):
        risk_file(d)
