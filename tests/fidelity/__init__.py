"""The differential harness: peer test suites run without and with errpolicy's
hooks installed at startup must end test by test the same (docs/fidelity.md)."""
