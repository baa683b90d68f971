"""Another client of a venue account, as a drill needs one: Binance's own
connector (`binance-connector`), never the node's adapter, so the node's only
way to the order endpoints stays its lease gate. It takes liquidity (the
switchover-under-load drill), rests an order list on the pair's own account
(the order-list-at-takeover drill), or cancels a node's quotes on it so the
node places new ones at a moment the drill chooses (the delayed-order drill). Its calls block: the drill runs them in a
thread, each with a short timeout, against the sim on loopback.
"""
import secrets
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_UP, Decimal

from ..node import client_ids

SYMBOL = "BTCUSDT"
TICK = Decimal("0.01")  # the sim's BTCUSDT PRICE_FILTER
TIMEOUT_S = 5


@dataclass(frozen=True)
class OrderList:
    """An OCO the drill rests on the account: a sell far above the market (LIMIT_MAKER) and a stop far
    below it, so neither leg fills during the drill. None of its client ids names an epoch."""

    order_list_id: int
    list_client_id: str
    leg_client_ids: tuple[str, ...]

    @property
    def client_ids(self) -> frozenset[str]:
        return frozenset({self.list_client_id, *self.leg_client_ids})


class OtherClient:
    def __init__(self, base_url: str, api_key: str, api_secret: str):
        from binance.spot import Spot

        self.spot = Spot(api_key=api_key, api_secret=api_secret, base_url=base_url, timeout=TIMEOUT_S)

    def market_order(self, side: str, quantity: float) -> dict:
        return self.spot.new_order(symbol=SYMBOL, side=side, type="MARKET", quantity=quantity)

    def rest_order_list(self, away: float = 0.05, quantity: str = "0.001") -> OrderList:
        """POST /api/v3/orderList/oco: sell `quantity` at `away` above the ask, stop `away` below the bid."""
        top = self.spot.book_ticker(symbol=SYMBOL)
        bid, ask = Decimal(top["bidPrice"]), Decimal(top["askPrice"])
        one = Decimal(1)
        tag = secrets.token_hex(4)
        list_id, above_id, below_id = f"drill-oco-{tag}", f"drill-oco-{tag}-above", f"drill-oco-{tag}-below"
        stop = (bid * (one - Decimal(away))).quantize(TICK, ROUND_DOWN)
        reply = self.spot.new_oco_order(
            symbol=SYMBOL, side="SELL", quantity=quantity, listClientOrderId=list_id,
            aboveType="LIMIT_MAKER", abovePrice=str((ask * (one + Decimal(away))).quantize(TICK, ROUND_UP)),
            aboveClientOrderId=above_id,
            belowType="STOP_LOSS_LIMIT", belowStopPrice=str(stop), belowPrice=str(stop - 10 * TICK),
            belowTimeInForce="GTC", belowClientOrderId=below_id)
        legs = tuple(o["clientOrderId"] for o in reply.get("orders", [])) or (above_id, below_id)
        return OrderList(int(reply["orderListId"]), reply.get("listClientOrderId", list_id), legs)

    def cancel_orders_of(self, node: str) -> list[str]:
        """Cancels, one by one by client id, the open orders whose client ids name `node` (a handful: a
        node rests at most `risk.max_open_orders`). Returns the client ids cancelled."""
        cancelled = []
        for o in self.spot.get_open_orders(symbol=SYMBOL):
            parsed = client_ids.parse(o.get("clientOrderId") or "")
            if parsed is not None and parsed.node == node:
                try:
                    self.spot.cancel_order(symbol=SYMBOL, origClientOrderId=o["clientOrderId"])
                    cancelled.append(o["clientOrderId"])
                except Exception:  # noqa: BLE001 - filled or cancelled meanwhile: nothing left to cancel
                    pass
        return cancelled

    def open_order_list_ids(self) -> set[int]:
        """GET /api/v3/openOrderList: the account's order lists still open."""
        return {int(entry["orderListId"]) for entry in self.spot.get_oco_open_orders()}
