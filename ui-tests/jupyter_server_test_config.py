"""Server configuration for the Galata tests (temporary root dir, no token, no browser)."""

from jupyterlab.galata import configure_jupyter_server

configure_jupyter_server(c)  # noqa: F821 (c is the config object jupyter injects)

# Uncomment to see the server's log while debugging a test
# c.ServerApp.log_level = "DEBUG"
