"""The simulated Kalshi exchange: a signed WebSocket and REST server on one loopback port."""
