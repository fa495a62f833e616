"""The only public HTTP edge of Tailor: authentication, roles, routing, REDCap.

Public: the routes of the permission table (`services.core.roles.PERMISSIONS`), nothing
else. The gateway's own `/metrics` is for the ops role; each service's `/metrics`,
`/healthz`, `/readyz` and `/openapi.json` are never forwarded (they have no rule) and are
reached only inside the cluster (Prometheus scrapes them there; see deploy/k8s)."""
