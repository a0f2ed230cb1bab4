"""Runnable examples: the Flask app of the failover demo, and the demo itself."""
