"""Secure STOMP Messenger: signs, encrypts, sends and receives accounting messages.

This package knows nothing of accounting records: it moves opaque message bodies
between directory queues and a message broker.
"""

__version__ = "0.1.0"
