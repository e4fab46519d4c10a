"""The worker fleet: what keeps workers serving.

The worker registry and heartbeat, draining, the `workers` / `scale` supervisor, which
tenant queues each worker consumes (shards, the shard map, resharding), the capacity
signal, the operator API and the Celery worker's own steps. fleet may import agents and
tenants; they never import fleet, which reaches them through signals and small hooks it
installs when it starts (see FleetConfig.ready()).
"""
