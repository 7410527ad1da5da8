"""Parley's shared live machinery: what every feature's sockets stand on.

Nothing here imports a feature app (accounts, rooms, calls); they import this.
"""
