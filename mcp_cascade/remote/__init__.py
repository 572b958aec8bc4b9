"""Sessions on other hosts: the cascade over NATS JetStream (DESIGN 10).

Imported only when ``nats_url`` is set, so local mode never loads the NATS client.
"""
