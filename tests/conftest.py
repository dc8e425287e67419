"""Shared test configuration.

Hypothesis deadlines are off: the CI machine has 2 cores and timings there say nothing about correctness.
The "ci" profile (used when CI=true) derandomizes so a red build is reproducible.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")
