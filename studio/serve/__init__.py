"""`studio serve`: a REST service and a browser page over the same runner, settings and engines as the CLI.

Modules: `config` (limits, auth, where data lives), `store` (jobs in SQLite), `uploads` (checking what
clients send), `worker` (the queue's workers), `app` (the FastAPI routes), `page.html` (the browser studio).
"""
