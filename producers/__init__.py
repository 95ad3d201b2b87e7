"""callqueue producers: the client library and command line other services use."""
