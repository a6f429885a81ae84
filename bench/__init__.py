"""``make bench``: the firehose server, the baseline clients and the benchmark runner."""

__all__: list[str] = []
