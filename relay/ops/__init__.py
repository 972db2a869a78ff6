"""Operating the relay: metrics in Prometheus text, the per-request record and access log, the
wire trace, and the ``--workers`` supervisor. Nothing here runs per event."""
