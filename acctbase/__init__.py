"""The suite's base layer: configuration, command line, logging, signals, pidfiles,
daemons and durable file writes, shared by the messenger (``ssm``) and the server
(``apel``).

It imports nothing from either, so a site installing only the messenger carries no
server code, and neither package reaches into the other for these helpers.
"""
