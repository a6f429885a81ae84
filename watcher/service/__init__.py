"""The running service: the pipeline, scheduled jobs, keyless polling, hot reload, write-back
and the daily digest."""
