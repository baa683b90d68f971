"""An embedded, Binance-Spot-wire-compatible venue for demos, tests and drills.

It is self-contained on purpose: nothing here imports the engine, so the
venue cannot accidentally share a bug with the client it is judging.
"""
