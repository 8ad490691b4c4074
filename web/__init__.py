"""The review web page (``themesift review``): see ``web.app.create_app``."""
