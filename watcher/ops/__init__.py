"""Operations: metrics and health, the operator read-outs, ``watcher check``, logging setup."""
