"""The `tailor` command: run services, the local stack, migrations and the demo."""
