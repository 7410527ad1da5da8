"""Django's PostgreSQL backend, for a server that restarts or goes away (see `base`)."""
