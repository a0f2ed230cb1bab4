"""The failover demo: ``make demo`` or ``python -m examples.failover_demo [--short]``.

Three memcached nodes on loopback ports, the example Flask app from
:mod:`examples.flask_app` in a real HTTP server, and simulated users with their own
cookies, through six phases: all up; one node killed; a node hung; nodes restarted;
every node down; nodes back. Figures per phase live on stderr, a table at the end,
JSON in ``demo-out/``; non-zero exit when an expectation is broken.
"""

from __future__ import annotations

from ._main import main

__all__ = ["main"]
