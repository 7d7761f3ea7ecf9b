"""End-to-end tests: the real ``git`` binary against a real running server on loopback.

By default the server under test is govc (``python -m govc serve``). Set
``GOVC_INTEROP_TARGET=http-backend`` to run the very same tests against stock git's own server
(``git http-backend`` behind lighttpd); that mode exists to prove the tests themselves are right.
"""
