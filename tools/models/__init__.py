"""Models that compute from the config and dated list prices, touching no AWS account: cost, prices, capacity
(make capacity; docs/CAPACITY.md)."""
