"""Local serving: model servers, their supervisor and a traffic router on 127.0.0.1.

``controller.adapters.local.client.LocalServing`` is what ``--target local`` uses; the daemon it
starts lives in ``controller.adapters.local.daemon``. Nothing is imported here, so that naming a
default (``defaults``) does not load the client.
"""
