"""`tape live`: trade a strategy on a venue's live market data, through ccxt (or --paper: the simulated venue); and
`tape live halt|reduce|resume|cancel-all NS`: the operator's commands to a running session."""
from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer

from handlers.incidents.config import IncidentConfig
from handlers.queue import QueueConfig
from handlers.risk.limits import RiskLimits
from handlers.strategy import listens, load_strategy
from handlers.venues.sim.config import VenueConfig
from runtime.cli import output
from runtime.cli.context import cli_context
from runtime.configfiles import incident_file, risk_file, venue_file
from runtime.live.credentials import load_credentials
from runtime.live.exchange import exchange_class, exchange_for
from runtime.live.node import SNAPSHOT_EVERY, LiveError, LiveNode, LiveSpec
from runtime.ops.alerts import Alerts, alert_file
from runtime.ops.commands import WAIT_SECONDS, CommandError, Scope, send
from runtime.times import parse_timeframe

live_app = typer.Typer(invoke_without_command=True, no_args_is_help=False,
                       help="Run a live or paper session (the options), or command a running one (the commands).")


@live_app.callback()
def live(
    ctx: typer.Context,
    venue: Optional[str] = typer.Option(None, "--venue", metavar="ID", help="ccxt exchange id, e.g. binance."),
    namespace: Optional[str] = typer.Option(None, "--namespace", metavar="live-NAME",
                                            help="The live namespace (resumed)."),
    strategy: Optional[str] = typer.Option(None, "--strategy", metavar="NAME", help="Built-in name or module:Class."),
    symbol: Optional[List[str]] = typer.Option(None, "--symbol", metavar="BASE/QUOTE",
                                               help="Market to trade (repeatable)."),
    param: Optional[List[str]] = typer.Option(None, "--param", metavar="K=V", help="Strategy parameter (repeatable)."),
    risk: Optional[Path] = typer.Option(None, "--risk", metavar="FILE", help="Risk limits and \\[queue] (TOML/JSON)."),
    paper: bool = typer.Option(False, "--paper", help="Live market data, the simulated venue: no order leaves."),
    paper_venue: Optional[Path] = typer.Option(None, "--paper-venue", metavar="FILE",
                                               help="Simulated venue settings for --paper (TOML or JSON)."),
    timeframe: str = typer.Option("1m", "--timeframe", help="Bars the strategy sees."),
    history: int = typer.Option(0, "--history", min=0, metavar="N", help="Bars before now to start from (new namespace)."),
    poll: float = typer.Option(1.0, "--poll", min=0.0, metavar="S", help="Seconds between polls of the venue."),
    fills_poll: float = typer.Option(1.0, "--fills-poll", min=0.0, metavar="S",
                                     help="Seconds between reads of the venue's trade history for fills."),
    window: float = typer.Option(30.0, "--visibility-window", min=0.0, metavar="S",
                                 help="How long an order may be invisible to lookups before absence counts."),
    sandbox_url: Optional[str] = typer.Option(None, "--sandbox-url", metavar="URL",
                                              help="Point ccxt at a sandbox venue (tape sandbox serve)."),
    credentials: Optional[Path] = typer.Option(None, "--credentials", metavar="FILE",
                                               help="TOML file with [venue] api_key/secret (else TAPE_<VENUE>_API_KEY)."),
    max_seconds: Optional[float] = typer.Option(None, "--max-seconds", metavar="S", help="Stop after S seconds."),
    metrics_port: Optional[int] = typer.Option(None, "--metrics-port", min=0, max=65535, metavar="P",
                                               help="Serve Prometheus metrics on http://ADDR:P/metrics (0: any port)."),
    metrics_addr: str = typer.Option("127.0.0.1", "--metrics-addr", metavar="ADDR",
                                     help="Address the metrics server listens on."),
    incidents: Optional[Path] = typer.Option(None, "--incidents", metavar="FILE",
                                             help="Incident thresholds and actions (TOML/JSON; defaults in "
                                                  "handlers/incidents/config.py)."),
    heartbeat: float = typer.Option(5.0, "--heartbeat", min=0.0, metavar="S",
                                    help="Seconds between the loop's recorded measures (what incidents are raised "
                                         "from, and event time when no market data comes)."),
    snapshot_every: int = typer.Option(SNAPSHOT_EVERY, "--snapshot-every", min=1, metavar="N",
                                       help="Events between snapshots (startup restores the latest and replays only "
                                            "what follows it); fixed for the namespace's life."),
    alerts: Optional[Path] = typer.Option(None, "--alerts", metavar="FILE",
                                          help="Webhooks told of incidents and halts (TOML/JSON; runtime/ops/alerts.py)."),
    dead_man: int = typer.Option(60, "--dead-man", min=0, metavar="S",
                                 help="Arm the venue's cancel-all-after with this timeout while healthy, where the venue "
                                      "has one (0: off)."),
    stream: bool = typer.Option(True, "--stream/--no-stream",
                                help="Bars from the venue's websocket stream, REST as the fallback (or REST only)."),
    account_stream: bool = typer.Option(True, "--account-stream/--no-account-stream",
                                        help="Read fills over REST when the venue's private stream says the account "
                                             "changed, not on a timer (the stream's content is never recorded)."),
    check_every: float = typer.Option(5.0, "--check-every", min=0.0, metavar="S",
                                      help="Seconds between comparisons of the venue's open orders and fills with "
                                           "the log's."),
) -> None:
    """Run the engine loop on a venue: startup is recovery and reconciliation; SIGINT/SIGTERM stop it cleanly."""
    if ctx.invoked_subcommand is not None:
        return
    missing = [name for name, value in (("--venue", venue), ("--namespace", namespace), ("--strategy", strategy),
                                        ("--symbol", symbol)) if not value]
    if missing:
        raise LiveError(f"missing option {', '.join(missing)}: tape live --venue ID --namespace live-NAME --strategy "
                        "NAME --symbol BASE/QUOTE [...] runs a session (tape live --help)")
    assert venue and namespace and strategy and symbol
    limits, queue = risk_file(risk) if risk is not None else (RiskLimits(), QueueConfig())
    spec = LiveSpec(namespace=namespace, venue=venue, symbols=tuple(symbol), strategy=strategy,
                    params=output.params_option(param or []), risk=limits, queue=queue, paper=paper,
                    paper_venue=venue_file(paper_venue) if paper_venue is not None else VenueConfig(),
                    timeframe=timeframe, timeframe_ns=parse_timeframe(timeframe), history_bars=history,
                    poll_seconds=poll, fills_seconds=fills_poll, check_seconds=check_every,
                    visibility_window_ns=int(window * 1e9),
                    snapshot_every=snapshot_every, heartbeat_seconds=heartbeat,
                    incidents=incident_file(incidents) if incidents is not None else IncidentConfig())
    alert_config = alert_file(alerts) if alerts is not None else None  # secrets: never part of the spec (the log)
    exchange_class(venue)
    creds = None if paper else load_credentials(venue, credentials)
    exchange = exchange_for(venue, creds, sandbox_url)
    kline_stream = None
    if stream:
        from handlers.venues.ccxt.stream import KlineStream

        # public market data: the streaming client holds no credentials
        kline_stream = KlineStream(exchange_for(venue, None, sandbox_url, pro=True), list(spec.symbols), timeframe)
    heard = listens(load_strategy(strategy))
    ticks = None
    if stream and heard & {"TradeTick", "QuoteTick"}:
        from handlers.venues.ccxt.stream import TickStream

        # what the strategy hears besides bars: its trades and the book's top, public data as the bars are
        ticks = TickStream(exchange_for(venue, None, sandbox_url, pro=True), list(spec.symbols),
                           trades="TradeTick" in heard, quotes="QuoteTick" in heard,
                           wake=kline_stream.arrived if kline_stream is not None else None)
    account = None
    if account_stream and not paper:
        from handlers.venues.ccxt.account_stream import AccountStream

        # the private stream: a client of its own with the credentials, waking the loop the bars wake
        account = AccountStream(exchange_for(venue, creds, sandbox_url, pro=True),
                                wake=kline_stream.arrived if kline_stream is not None else None)
    stopping = [False]

    def on_signal(signum: int, frame: Any) -> None:
        stopping[0] = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    venue_clock = None
    if sandbox_url:
        from handlers.venues.ccxt.clock import SandboxClock

        venue_clock = SandboxClock(sandbox_url)  # the replay's market time, not the wall clock
    metrics = None
    if metrics_port is not None:
        from runtime.ops.metrics import SessionMetrics

        metrics = SessionMetrics(namespace)
        try:
            port = metrics.serve(metrics_port, metrics_addr)
        except OSError as e:
            raise LiveError(f"--metrics-port {metrics_port} on {metrics_addr}: {e.strerror or e}; choose another "
                            "port (0 picks a free one)") from None
        sys.stderr.write(f"metrics on http://{metrics_addr}:{port}/metrics\n")
        sys.stderr.flush()
    secrets = creds.values() if creds else ()
    switch = None
    if dead_man and not paper:
        from handlers.venues.ccxt.deadman import DeadMansSwitch

        switch = DeadMansSwitch(exchange, dead_man, secrets=secrets)
    node = LiveNode(cli_context(ctx).open(), spec, exchange, venue_clock=venue_clock, metrics=metrics,
                    secrets=secrets, stream=kline_stream, account=account, ticks=ticks,
                    deadman=switch if switch and switch.available else None,
                    alerts=Alerts(alert_config, namespace) if alert_config is not None else None)
    if switch is not None and not switch.available:
        sys.stderr.write(f"note: {venue} has no dead-man's switch in ccxt (cancel-all-after): resting orders stay at "
                         "the venue if this session dies (--dead-man 0 silences this)\n")
    s = node.run(lambda: stopping[0], max_seconds=max_seconds)
    since = "" if s.snapshot_seq is None else f" after the snapshot at seq {s.snapshot_seq:,}"
    sys.stdout.write(f"{s.namespace}: recovered {s.recovered_events:,} events{since} ({s.recovered_inputs:,} inputs), "
                     f"{s.inputs:,} inputs this session ({s.bars_streamed:,} bars streamed, {s.bars_polled:,} polled"
                     f"{f', {s.trades:,} trades' if s.trades else ''}{f', {s.quotes:,} quotes' if s.quotes else ''}), "
                     f"{s.fills:,} fills ({s.fill_reads:,} reads of the venue's trades, {s.account_updates:,} account "
                     f"updates streamed), {s.resolved_in_doubt:,} sends in doubt resolved\n")


# ---- commands to a running session ---------------------------------------------------------------------------------

_SCOPE = typer.Option("account", "--scope", metavar="SCOPE",
                      help="account (the whole session; also strategy[:ID], venue[:ID]) or instrument:ID.")
_REASON = typer.Option(..., "--reason", metavar="TEXT", help="Why, in your words (recorded in the log).")
_WAIT = typer.Option(WAIT_SECONDS, "--wait", min=0.5, metavar="S",
                     help="How long to wait for the session to record the command (it expires after that).")


def command_answer(ctx: typer.Context, namespace: str, command: str, *, scope: str = "account", reason: str = "",
                   incident_id: str | None = None, wait: float = WAIT_SECONDS) -> None:
    """Send a command, print what the session recorded; a refusal is a one-line error (exit 2)."""
    answer = send(cli_context(ctx).open(), namespace, command, scope=Scope.parse(scope), reason=reason,
                  incident_id=incident_id, wait=wait)
    refused = answer.refused
    if refused is not None:
        raise CommandError(f"{namespace} recorded {command.replace('_', '-')} at seq {answer.seq:,} and refused "
                           f"it: {refused}")
    sys.stdout.write(f"{namespace}: {command.replace('_', '-')} recorded at seq {answer.seq:,}\n")
    for name, data in answer.events:
        sys.stdout.write(f"  {describe(name, data)}\n")


def describe(name: str, data: dict[str, Any]) -> str:
    """One line for an event a command caused."""
    if name == "TradingStateChanged":
        return f"trading {data['previous']} -> {data['state']}"
    if name == "IncidentRaised":
        return f"incident {data['incident_id']} raised: {data['detail']}"
    if name == "IncidentResolved":
        return f"incident {data['incident_id']} resolved: {data['detail']}"
    if name == "CancelIntent":
        return f"cancel {data['client_order_id']} on {data['instrument_id']}"
    return name


@live_app.command("halt")
def halt(ctx: typer.Context, namespace: str = typer.Argument(..., metavar="NS"), scope: str = _SCOPE,
         reason: str = _REASON, wait: float = _WAIT) -> None:
    """No new orders: the whole session (HALTED) or one instrument; open orders stay (cancel-all cancels them)."""
    command_answer(ctx, namespace, "halt", scope=scope, reason=reason, wait=wait)


@live_app.command("reduce")
def reduce(ctx: typer.Context, namespace: str = typer.Argument(..., metavar="NS"), scope: str = _SCOPE,
           reason: str = _REASON, wait: float = _WAIT) -> None:
    """Only orders that reduce a position: the whole session (REDUCING) or one instrument."""
    command_answer(ctx, namespace, "reduce", scope=scope, reason=reason, wait=wait)


@live_app.command("resume")
def resume(ctx: typer.Context, namespace: str = typer.Argument(..., metavar="NS"), scope: str = _SCOPE,
           reason: str = _REASON, wait: float = _WAIT) -> None:
    """Trade again — refused while an incident that halted the session is open and not acknowledged."""
    command_answer(ctx, namespace, "resume", scope=scope, reason=reason, wait=wait)


@live_app.command("cancel-all")
def cancel_all(ctx: typer.Context, namespace: str = typer.Argument(..., metavar="NS"), scope: str = _SCOPE,
               reason: str = typer.Option("", "--reason", metavar="TEXT", help="Why (recorded in the log)."),
               wait: float = _WAIT) -> None:
    """Cancel every open order of the session (or of one instrument)."""
    command_answer(ctx, namespace, "cancel_all", scope=scope, reason=reason, wait=wait)
