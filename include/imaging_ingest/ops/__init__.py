"""Operations: the pipeline's metrics, alerts, stage observation and the StatsD bridge."""
