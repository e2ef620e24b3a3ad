"""Load drivers and their judge: the Locust file (make loadtest), the soak (make soak), the verifier
(make verify) and the one reconciler they and the reliability tests share (reconcile.py)."""
