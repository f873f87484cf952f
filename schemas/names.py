"""Groups of event names, each named once: every fold, handler and query that routes by name takes its group here.

tests/schemas/test_names.py checks every group against the catalog (each name is an event type, in the topic the
group says), so a renamed or removed event cannot silently drop out of a group.
"""
from __future__ import annotations

# market topic
PRICES = ("Bar", "TradeTick", "QuoteTick")  # market data that moves a price: what a venue matches, a strategy hears
BOOK = ("OrderBookDelta", "OrderBookSnapshot")
MARKET = ("InstrumentDefined",) + PRICES + BOOK
STRATEGY_CALLBACKS = {"Bar": "on_bar", "TradeTick": "on_trade", "QuoteTick": "on_quote"}

# intents topic: what a strategy asks, what risk decides, what the outbound queue does
INTENTS = ("OrderIntent", "CancelIntent")
VERDICTS = ("RiskAccepted", "RiskRejected")
QUEUE = ("OrderHeld", "OrderReleased")

# executions topic: what the venue says about an order (OrderSubmitted is the runtime's record of sending it)
VENUE_REPORTS = ("OrderAccepted", "OrderRejected", "OrderTriggered", "OrderCanceled", "OrderCancelRejected",
                 "OrderExpired", "OrderOutcomeUnknown", "OrderResolvedAbsent")
EXECUTIONS = ("OrderSubmitted",) + VENUE_REPORTS + ("OrderFilled",)
ENDINGS = ("OrderRejected", "OrderCanceled", "OrderExpired", "OrderResolvedAbsent")  # done with an order, unfilled

ORDER_CHAIN = INTENTS + VERDICTS + QUEUE + EXECUTIONS  # every event that carries an order's client order id

# the topic each group's names must live in (checked by the test)
TOPICS = {"PRICES": "market", "BOOK": "market", "MARKET": "market", "INTENTS": "intents", "VERDICTS": "intents",
          "QUEUE": "intents", "VENUE_REPORTS": "executions", "EXECUTIONS": "executions", "ENDINGS": "executions"}
