"""Every event-name group names real event types of the catalog, in the topic the group belongs to."""
import pytest

from eventstore.catalog import Catalog
from schemas import names

GROUPS = {k: v for k, v in vars(names).items() if k.isupper() and isinstance(v, (tuple, dict)) and k != "TOPICS"}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_every_name_is_an_event_type(catalog, group):
    missing = [n for n in GROUPS[group] if n not in catalog.by_name]
    assert not missing, f"names.{group} names {missing}, which the catalog does not define"


@pytest.mark.parametrize("group", sorted(names.TOPICS))
def test_groups_live_in_their_topic(catalog, group):
    topic = names.TOPICS[group]
    wrong = [n for n in GROUPS[group] if catalog.by_name[n].topic != topic]
    assert not wrong, f"names.{group} should hold {topic} events only, not {wrong}"


def test_order_chain_is_every_event_that_carries_a_client_order_id(catalog):
    carrying = {t.name for t in catalog.types
                if any(f["name"] == "client_order_id" for f in t.schema["fields"])}
    assert carrying == set(names.ORDER_CHAIN)


def test_executions_are_every_execution_about_one_order(catalog):
    orders = {t.name for t in catalog.types if t.topic == "executions" and t.name != "AccountState"}
    assert orders == set(names.EXECUTIONS)
    assert set(names.ENDINGS) <= set(names.VENUE_REPORTS)
