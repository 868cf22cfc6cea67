"""Local fakes of external services, speaking their real wire formats.

They run in-process on 127.0.0.1 so tests exercise the real client libraries
(anthropic + instructor, requests) end to end without a network.
"""
