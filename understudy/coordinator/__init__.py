"""The trading lock: a backend-independent lease API with Redis and Consul backends and fencing epochs."""
