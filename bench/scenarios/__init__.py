"""The scenarios, each a `run(bench) -> Result` that measures its own floor."""

from . import concurrency, elastic, fairness, overhead, recovery, sessions, tenants

SCENARIOS = {
    "overhead": overhead.run,
    "concurrency": concurrency.run,
    "tenants": tenants.run,
    "fairness": fairness.run,
    "sessions": sessions.run,
    "recovery": recovery.run,
    "elastic": elastic.run,
}
