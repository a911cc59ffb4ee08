"""The composition root: the `coldchain` CLI and the local service launcher."""
