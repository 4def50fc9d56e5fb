"""The reference action consumer (``nurture sender``): from ``nurture.actions`` to the inbox once.

* :mod:`.templates`: one Jinja2 template per template name the rules emit;
* :mod:`.store`: the durable dedupe store (delivered markers, held actions) in RocksDB;
* :mod:`.transports`: the delivery seam (SMTP, webhook, stdout);
* :mod:`.service`: the consume / hold / deliver / commit loop.
"""
