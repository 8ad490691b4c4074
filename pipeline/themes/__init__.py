"""Themes: vectors clustered (``cluster``), left-out segments joined to themes they fit (``join``),
themes described (``describe``) and ranked (``rank``), put together as candidate themes (``assemble``);
a theme re-clustered into parts on request (``split``)."""
