"""What servers use: the periodic usage scan, Prometheus metrics, volume quotas.

``scan``: one bounded, cached scan of running servers and volume sizes, read
by the servers page, the metrics and the quota check; ``metrics``: the
``jupyterhub_ext_*`` series on ``/hub/metrics``; ``quota``: soft and hard
sizes per volume-set entry.
"""
