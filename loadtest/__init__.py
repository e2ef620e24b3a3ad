"""Load test (Locust) and the verifier that reconciles acknowledgements with the bucket."""
