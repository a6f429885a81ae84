"""watcher.kalshi: a reusable Kalshi WebSocket + REST client, sans-I/O core and simulator."""
