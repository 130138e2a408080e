"""The HTTP face of pattogis: a FastAPI app (``api.app.create_app``) with OGC API - Features,
proposals, analysis and map routers over the same library functions the CLI calls."""
