"""The ground floor: artifact store, config, errors, console, hashing, the pairs data contract and
model identity. It imports nothing from the stages (crawlers, compose, mining, training) or from
orchestration (cli, iterate, sweep, report); the floor map is core.floors, and tests/test_layout.py
holds every import to it."""
