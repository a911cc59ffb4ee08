"""The API's routers, one module per area; :func:`api.app.create_app` mounts them."""
