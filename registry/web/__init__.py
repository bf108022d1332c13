"""The back office (issue 16): a web application over the registry's database. A JSON API under /api
(OpenAPI at /api/openapi.json) and server-rendered pages over the same endpoint functions, for four roles:
network operators, station managers, fleet customers and cardholders. registry.web.app builds it."""
