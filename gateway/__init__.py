"""The only public HTTP edge of Tailor: authentication, roles, routing, REDCap."""
