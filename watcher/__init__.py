"""watcher: a paper-trading alert and position-watch service for Kalshi prediction markets."""

__all__ = ["__version__"]

__version__ = "0.1.0"
