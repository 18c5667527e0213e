"""Built-in Butler plugins, one module per API area (installed as ``butler_plugins``)."""
