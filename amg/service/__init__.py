"""`amg serve`: the HTTP API, the web page and the persistent job queue."""
