"""Prices (app/services/pricing.py) and the price lists' rules (app/services/price_lists.py): every term and billing
frequency, markups, overrides and their precedence, floors, locks, to the cent — on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app import clock
from app.extensions import db
from app.models.accounts import Account
from app.models.catalog import Availability, PriceRule, Product
from app.models.events import Event
from app.models.subscriptions import Subscription, UsagePoint
from app.services import catalogue, price_lists, pricing, subscriptions
from app.services.price_lists import PriceRuleError
from security import scoping

D = Decimal
BASIC = "CFQ7TTC0LH18:0001"
BASIC_2 = "CFQ7TTC0LH18:0002"  # another SKU of the same product
EXO = "CFQ7TTC0LH16:0001"
# term, billing frequency, Microsoft's cost, ERP (per licence per billing period, as the sheet states them)
SHEET = [
    ("P1M", "monthly", "9.1800", "10.8000"),
    ("P1Y", "monthly", "7.6500", "9.0000"),
    ("P1Y", "annual", "87.2100", "102.6000"),
    ("P3Y", "monthly", "7.2700", "8.5500"),
    ("P3Y", "annual", "83.9700", "98.7600"),
    ("P3Y", "triennial", "251.9100", "296.2800"),
]


@contextmanager
def ctx(app):
    with app.app_context(), scoping.bypass("test: pricing"):
        yield
        db.session.rollback()


def _catalogue() -> dict[str, int]:
    """Business Basic in every availability, a second SKU of it and Exchange (P1Y monthly); ids by key."""
    ids = {}
    basic = catalogue.ensure_product("Microsoft 365 Business Basic", BASIC, "Microsoft 365 Business Basic")
    for term, frequency, cost, erp in SHEET:
        ids[f"{term}/{frequency}"] = catalogue.set_price(
            catalogue.ensure_availability(basic, term, frequency), cost, erp
        ).availability_id
    basic2 = catalogue.ensure_product(
        "Microsoft 365 Business Basic (no Teams)", BASIC_2, "Microsoft 365 Business Basic"
    )
    ids["basic2"] = catalogue.set_price(
        catalogue.ensure_availability(basic2, "P1Y", "monthly"), "7.00", "8.50"
    ).availability_id
    exo = catalogue.ensure_product("Exchange Online (Plan 1)", EXO)
    ids["exo"] = catalogue.set_price(
        catalogue.ensure_availability(exo, "P1Y", "monthly"), "4.68", "5.50"
    ).availability_id
    ids["basic_product"], ids["basic2_product"] = basic.id, basic2.id
    db.session.commit()
    return ids


@pytest.fixture
def cat(app, world):
    with ctx(app):
        return _catalogue()


def _acc(world, key) -> Account:
    return db.session.get(Account, world.accounts[key].id)


def _av(ids, key) -> Availability:
    return db.session.get(Availability, ids[key])


def _rule(level, owner, basis, percent, **kw) -> PriceRule:
    rule = price_lists.create_rule(level, owner, basis=basis, percent=percent, **kw)
    db.session.commit()
    return rule


def _new_sub(customer, availability, price: str = "9.00") -> Subscription:
    today = clock.today()
    sub = subscriptions.new_subscription(
        customer,
        availability,
        3,
        unit_price=D(price),
        unit_cost=D("7.65"),
        ms_unit_cost=D("7.65"),
        provider_subscription_id=None,
        term_started_on=today,
        renew_on=subscriptions.renewal_date(today, availability.term),
        added_at=dt.datetime.combine(today, dt.time(9)),
    )
    db.session.commit()
    return sub


# -- every term and billing frequency ----------------------------------------------------------------------------------

# buy = cost + 8 %, sell = buy + 15 %: per billing period, then per month (half up), buy and margin per month
EXPECTED = {
    "P1M/monthly": ("9.91", "11.40", "11.40", "9.91", "1.49"),
    "P1Y/monthly": ("8.26", "9.50", "9.50", "8.26", "1.24"),
    "P1Y/annual": ("94.19", "108.32", "9.03", "7.85", "1.18"),
    "P3Y/monthly": ("7.85", "9.03", "9.03", "7.85", "1.18"),
    "P3Y/annual": ("90.69", "104.29", "8.69", "7.56", "1.13"),
    "P3Y/triennial": ("272.06", "312.87", "8.69", "7.56", "1.13"),
}


@pytest.mark.parametrize("key", list(EXPECTED))
def test_prices_for_every_term_and_billing_frequency(app, world, cat, key):
    with ctx(app):
        _rule("buy", _acc(world, "operator"), "cost", "8")
        _rule("sell", _acc(world, "reseller_a"), "buy", "15")
        q = pricing.quote(_acc(world, "customer_a"), _av(cat, key))
        buy, sell, sell_month, buy_month, margin_month = map(D, EXPECTED[key])
        assert (q.buy, q.sell) == (buy, sell)
        assert (q.per_month(q.sell), q.per_month(q.buy), q.per_month(q.margin)) == (sell_month, buy_month, margin_month)
        assert q.buy_rule == "cost + 8 %" and q.sell_rule == "buy + 15 %" and not q.floored


def test_without_rules_resellers_pay_cost_and_customers_retail(app, world, cat):
    with ctx(app):
        q = pricing.quote(_acc(world, "customer_a"), _av(cat, "P1Y/annual"))
        assert (q.ms_cost, q.erp, q.buy, q.sell) == (D("87.21"), D("102.60"), D("87.21"), D("102.60"))
        assert q.buy_rule == "Microsoft's cost" and q.sell_rule == "Microsoft's retail price"


def test_retail_bases(app, world, cat):
    with ctx(app):
        _rule("buy", _acc(world, "reseller_a"), "retail", "-10")
        _rule("sell", _acc(world, "reseller_a"), "retail", "5", below_cost_intended=False)
        q = pricing.quote(_acc(world, "customer_a"), _av(cat, "P1Y/monthly"))
        assert (q.buy, q.sell) == (D("8.10"), D("9.45"))
        # Reseller B has no rules of its own: the operator's defaults (none) apply.
        q_b = pricing.quote(_acc(world, "customer_b"), _av(cat, "P1Y/monthly"))
        assert (q_b.buy, q_b.sell) == (D("7.65"), D("9.00"))


# -- precedence ------------------------------------------------------------------------------------------------------


def test_sell_precedence_subscription_customer_sku_product_default_then_reseller(app, world, cat):
    with ctx(app):
        reseller, customer = _acc(world, "reseller_a"), _acc(world, "customer_a")
        av = _av(cat, "P1Y/monthly")
        sub = _new_sub(customer, av)
        basic = db.session.get(Product, cat["basic_product"])
        made = [
            _rule("sell", reseller, "buy", "11"),
            _rule("sell", reseller, "buy", "12", ms_product_id=basic.ms_product_id),
            _rule("sell", reseller, "buy", "13", product=basic),
            _rule("sell", customer, "buy", "14"),
            _rule("sell", customer, "buy", "15", ms_product_id=basic.ms_product_id),
            _rule("sell", customer, "buy", "16", product=basic),
            _rule("sell", customer, "buy", "17", subscription=sub),
        ]
        ids = [r.id for r in made]
        seen = []
        for rule_id in reversed(ids):
            seen.append(pricing.quote(customer, av, subscription_id=sub.id).sell_rule)
            price_lists.delete_rule(db.session.get(PriceRule, rule_id))
            db.session.commit()
        seen.append(pricing.quote(customer, av, subscription_id=sub.id).sell_rule)
        assert seen == [f"buy + {p} %" for p in (17, 16, 15, 14, 13, 12, 11)] + ["Microsoft's retail price"]


def test_a_subscription_rule_prices_only_that_subscription_and_another_customer_keeps_the_reseller_default(
    app, world, cat
):
    with ctx(app):
        reseller, customer = _acc(world, "reseller_a"), _acc(world, "customer_a")
        av = _av(cat, "P1Y/monthly")
        sub = _new_sub(customer, av)
        _rule("sell", reseller, "buy", "20")
        _rule("sell", customer, "buy", "30", subscription=sub)
        assert pricing.quote(customer, av, subscription_id=sub.id).sell == D("9.95")  # 7.65 × 1.3 = 9.945
        assert pricing.quote(customer, av).sell == D("9.18")  # a new order: the reseller's default
        assert pricing.quote(_acc(world, "customer_a2"), av).sell == D("9.18")


def test_buy_precedence_reseller_then_operator(app, world, cat):
    with ctx(app):
        operator, reseller = _acc(world, "operator"), _acc(world, "reseller_a")
        basic = db.session.get(Product, cat["basic_product"])
        av = _av(cat, "P1Y/monthly")
        ids = [
            _rule("buy", operator, "cost", "1").id,
            _rule("buy", operator, "cost", "2", ms_product_id=basic.ms_product_id).id,
            _rule("buy", operator, "cost", "3", product=basic).id,
            _rule("buy", reseller, "cost", "4").id,
            _rule("buy", reseller, "cost", "5", ms_product_id=basic.ms_product_id).id,
            _rule("buy", reseller, "cost", "6", product=basic).id,
        ]
        seen = []
        for rule_id in reversed(ids):
            seen.append(pricing.quote(_acc(world, "customer_a"), av).buy_rule)
            price_lists.delete_rule(db.session.get(PriceRule, rule_id))
            db.session.commit()
        assert seen == [f"cost + {p} %" for p in (6, 5, 4, 3, 2, 1)]


def test_a_product_rule_covers_every_sku_of_it_and_a_sku_rule_only_its_own(app, world, cat):
    with ctx(app):
        reseller = _acc(world, "reseller_a")
        basic = db.session.get(Product, cat["basic_product"])
        _rule("sell", reseller, "buy", "10", ms_product_id=basic.ms_product_id)
        _rule("sell", reseller, "buy", "20", product=basic)
        customer = _acc(world, "customer_a")
        assert pricing.quote(customer, _av(cat, "P1Y/monthly")).sell_rule == "buy + 20 %"
        assert pricing.quote(customer, _av(cat, "basic2")).sell_rule == "buy + 10 %"
        assert pricing.quote(customer, _av(cat, "exo")).sell_rule == "Microsoft's retail price"


# -- to the cent -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cost, percent, expected",
    [
        ("10.3500", "10", "11.39"),  # 11.385: half up (half even would give 11.38)
        ("1.0000", "0.5", "1.01"),  # 1.005: a float would give 1.00
        ("10.0050", "0", "10.01"),  # the sheet's four decimals, rounded once
        ("0.0050", "0", "0.01"),
        ("12.1234", "-0.01", "12.12"),
    ],
)
def test_buy_prices_are_rounded_half_up_to_the_cent(app, world, cost, percent, expected):
    with ctx(app):
        item = catalogue.ensure_product("Cent Test", "CENTS:0001")
        av = catalogue.ensure_availability(item, "P1Y", "monthly")
        catalogue.set_price(av, cost, "99.0000")
        _rule("buy", _acc(world, "reseller_a"), "cost", percent)
        q = pricing.quote(_acc(world, "customer_a"), av)
        assert q.buy == D(expected) and str(q.buy) == expected


def test_per_month_equivalents_round_half_up(app):
    assert pricing.monthly(D("12.06"), 12) == D("1.01")  # 1.005
    assert pricing.monthly(D("100.00"), 12) == D("8.33")
    assert pricing.monthly(D("0.18"), 36) == D("0.01")  # 0.005


def test_stored_percent_and_prices_are_exact_decimals(app, world, cat):
    with ctx(app):
        _rule("sell", _acc(world, "reseller_a"), "buy", "12.34")
    with ctx(app):
        rule = db.session.scalars(select(PriceRule)).one()
        assert rule.percent == D("12.34") and isinstance(rule.percent, Decimal)
        assert pricing.quote(_acc(world, "customer_a"), _av(cat, "P1Y/annual")).sell == D("97.97")  # 87.21 × 1.1234


# -- floors ------------------------------------------------------------------------------------------------------------


def test_a_sell_rule_under_the_buy_price_is_refused_with_the_product_and_both_prices(app, world, cat):
    with ctx(app):
        _rule("buy", _acc(world, "operator"), "cost", "8")
        with pytest.raises(PriceRuleError) as refused:
            price_lists.create_rule("sell", _acc(world, "reseller_a"), basis="retail", percent="-10")
        message = str(refused.value)
        # Exchange Online (Plan 1), the first by name: retail 5.50 − 10 % = 4.95 under the buy price 4.68 + 8 % = 5.05
        assert "Exchange Online (Plan 1)" in message and "$4.95" in message and "$5.05" in message
        assert refused.value.field == "below_cost_intended"
        db.session.rollback()
        assert db.session.scalar(select(func.count(PriceRule.id)).where(PriceRule.level == "sell")) == 0


def test_below_cost_intended_is_kept_and_an_unintended_one_is_floored(app, world, cat):
    with ctx(app):
        reseller, customer = _acc(world, "reseller_a"), _acc(world, "customer_a")
        av = _av(cat, "P1Y/monthly")
        rule = _rule("sell", reseller, "buy", "-5", below_cost_intended=True)
        q = pricing.quote(customer, av)
        assert (q.buy, q.sell, q.floored) == (D("7.65"), D("7.27"), False)  # 7.2675 half up
        with pytest.raises(PriceRuleError):
            price_lists.change_rule(rule, basis="buy", percent="-5", below_cost_intended=False)
        db.session.rollback()
        assert db.session.get(PriceRule, rule.id).below_cost_intended is True
        # A rule the operator's later buy rule undercuts, unintended: the buy price is charged.
        rule = db.session.get(PriceRule, rule.id)
        price_lists.change_rule(rule, basis="retail", percent="-10")  # 8.10 ≥ 7.65 today: accepted
        db.session.commit()
        _rule("buy", _acc(world, "operator"), "cost", "8")  # now the buy price is 8.26
        q = pricing.quote(customer, av)
        assert (q.buy, q.sell, q.floored, q.rule_sell) == (D("8.26"), D("8.26"), True, D("8.10"))


# -- locks and applying now --------------------------------------------------------------------------------------------


def test_a_changed_markup_prices_new_orders_at_once_and_never_rewrites_a_subscription(app, world, cat):
    with ctx(app):
        reseller, customer = _acc(world, "reseller_a"), _acc(world, "customer_a")
        annual, monthly = (
            _new_sub(customer, _av(cat, "P1Y/monthly"), "9.00"),
            _new_sub(customer, _av(cat, "P1M/monthly"), "10.80"),
        )
        rule = _rule("sell", reseller, "buy", "15")
        assert pricing.quote(customer, _av(cat, "P1Y/monthly")).sell == D("8.80")
        price_lists.change_rule(rule, basis="buy", percent="25")
        db.session.commit()
        assert pricing.quote(customer, _av(cat, "P1Y/monthly")).sell == D("9.56")  # 9.5625
        annual, monthly = annual.id, monthly.id
    with ctx(app):
        prices = dict(db.session.execute(select(Subscription.id, Subscription.unit_price)).all())
        assert prices[annual] == D("9.00") and prices[monthly] == D("10.80")


def test_apply_now_reprices_only_monthly_terms_with_an_event_and_a_usage_point_each(app, world, cat):
    with ctx(app):
        reseller, customer = _acc(world, "reseller_a"), _acc(world, "customer_a")
        other = _acc(world, "customer_a2")
        annual = _new_sub(customer, _av(cat, "P1Y/monthly"), "9.00")
        monthly = _new_sub(customer, _av(cat, "P1M/monthly"), "10.80")
        others_monthly = _new_sub(other, _av(cat, "P1M/monthly"), "10.80")
        _rule("sell", reseller, "buy", "10")
        points = db.session.scalar(select(func.count(UsagePoint.id)))
        changed = price_lists.apply_now_to_monthly_terms(reseller, customer)
        db.session.commit()
        assert [(c.subscription_id, c.old, c.new) for c in changed] == [(monthly.id, D("10.80"), D("10.10"))]
        assert db.session.scalar(select(func.count(UsagePoint.id))) == points + 1
        event = db.session.scalars(select(Event).where(Event.action == "subscription.repriced")).one()
        assert event.account_id == customer.id and "$10.80 → $10.10" in event.summary
        assert "buy" not in event.summary.lower() and "cost" not in event.summary.lower()
        # every customer's: the other customer's monthly term too; applying again changes nothing
        changed = price_lists.apply_now_to_monthly_terms(reseller)
        db.session.commit()
        assert [c.subscription_id for c in changed] == [others_monthly.id]
        assert price_lists.apply_now_to_monthly_terms(reseller) == []
        db.session.commit()
        annual, monthly, others_monthly = annual.id, monthly.id, others_monthly.id
    with ctx(app):
        prices = dict(db.session.execute(select(Subscription.id, Subscription.unit_price)).all())
        assert prices[annual] == D("9.00")
        assert prices[monthly] == prices[others_monthly] == D("10.10")


# -- validation and integrity ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("percent", ["abc", "", "-100", "1000", "1.234", "nan", "sNaN", "Infinity", "1e309"])
def test_percentages_outside_the_check_are_refused_beside_the_field(app, world, percent):
    with ctx(app):
        with pytest.raises(PriceRuleError) as refused:
            price_lists.create_rule("sell", _acc(world, "reseller_a"), basis="buy", percent=percent)
        assert refused.value.field == "percent"


def test_rules_that_do_not_fit_their_list_are_refused(app, world, cat):
    with ctx(app):
        reseller, customer = _acc(world, "reseller_a"), _acc(world, "customer_a")
        with pytest.raises(PriceRuleError) as refused:
            price_lists.create_rule("sell", reseller, basis="cost", percent="5")
        assert refused.value.field == "basis"
        with pytest.raises(PriceRuleError):
            price_lists.create_rule("buy", customer, basis="cost", percent="5")
        with pytest.raises(PriceRuleError) as refused:
            price_lists.create_rule("sell", reseller, basis="buy", percent="5", ms_product_id="NOPE")
        assert refused.value.field == "applies_to"
        sub = _new_sub(customer, _av(cat, "P1Y/monthly"))
        with pytest.raises(PriceRuleError):  # a subscription's rule belongs to its customer
            price_lists.create_rule("sell", _acc(world, "customer_a2"), basis="buy", percent="5", subscription=sub)


def test_at_most_one_rule_per_owner_level_and_reach(app, world, cat):
    with ctx(app):
        reseller = _acc(world, "reseller_a")
        _rule("sell", reseller, "buy", "15")
        with pytest.raises(PriceRuleError):
            price_lists.create_rule("sell", reseller, basis="buy", percent="20")
        db.session.rollback()
        # the database refuses it too (two requests racing past the service's check)
        db.session.add(PriceRule(account_id=reseller.id, level="sell", basis="buy", percent=D("20")))
        with pytest.raises(IntegrityError):
            db.session.flush()
        db.session.rollback()
        # the same reach in another list, or another reach in this one, is fine
        _rule("buy", reseller, "cost", "5")
        _rule("sell", reseller, "buy", "20", product=db.session.get(Product, cat["basic_product"]))
        assert db.session.scalar(select(func.count(PriceRule.id))) == 3


def test_a_duplicate_that_raced_past_the_check_is_refused_in_words(app, world, cat, monkeypatch):
    with ctx(app):
        reseller = _acc(world, "reseller_a")
        _rule("sell", reseller, "buy", "15")
        monkeypatch.setattr(price_lists, "_duplicate", lambda *args, **kwargs: None)  # the other request's view
        with pytest.raises(PriceRuleError) as refused:
            price_lists.create_rule("sell", _acc(world, "reseller_a"), basis="buy", percent="20")
        assert "already a rule" in str(refused.value)
    with ctx(app):
        assert [str(p) for p in db.session.scalars(select(PriceRule.percent))] == ["15.00"]


def test_every_change_is_an_event_naming_the_list_and_old_and_new_rule(app, world, cat):
    with ctx(app):
        operator, reseller, customer = (_acc(world, k) for k in ("operator", "reseller_a", "customer_a"))
        rule = _rule("sell", customer, "buy", "10")
        price_lists.change_rule(rule, basis="buy", percent="12.5")
        db.session.commit()
        price_lists.delete_rule(db.session.get(PriceRule, rule.id))
        _rule("buy", reseller, "cost", "8")
        events = db.session.scalars(select(Event).where(Event.action.like("price_rule.%")).order_by(Event.id)).all()
        assert [(e.action, e.account_id) for e in events] == [
            ("price_rule.created", reseller.id),
            ("price_rule.changed", reseller.id),
            ("price_rule.deleted", reseller.id),
            ("price_rule.created", operator.id),  # buy prices: the operator's log, never a reseller's
        ]
        assert "Alpha Partners Ltd's prices for Aardvark Farms" in events[1].summary
        assert "buy + 10 % → buy + 12.5 %" in events[1].summary
        assert "buy + 12.5 % → none" in events[2].summary
        assert "Alpha Partners Ltd's buy prices" in events[3].summary and "none → cost + 8 %" in events[3].summary
