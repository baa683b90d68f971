"""The node engine: venue adapter, market data, account state, strategy, risk and the OMS behind one lease gate."""
