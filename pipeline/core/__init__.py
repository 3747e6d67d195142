"""The ground floor: artifact store, config, errors, console, hashing, the pairs data contract and
model identity. It imports nothing from the stages (crawlers, compose, mining, training) or from
orchestration (iterate, report, cli); tests/test_layout.py holds it to that."""
