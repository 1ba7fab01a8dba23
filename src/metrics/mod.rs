//! Latency histograms, counters, `ringpost stats` and Prometheus text.
