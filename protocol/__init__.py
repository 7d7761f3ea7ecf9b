"""Git's wire protocol as pure functions and state machines over bytes (sans-IO).

Nothing in this package touches a socket, awaits, or knows about HTTP: parsers take bytes and return
events, encoders return bytes. The server in :mod:`govc.server` adapts them to aiohttp.
"""
