"""The EAS protocol itself: parameters, signing, endpoints and the error table. No I/O.

Shared by the client and the simulator; imports nothing above ``scanner.errors``.
"""
