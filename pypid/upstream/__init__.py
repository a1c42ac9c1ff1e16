"""
The upstream fallback: projects that are not on this index are fetched from
an upstream index named by the operator, cached on disk and served as if
they were local.

Pure parts: L{records} (upstream pages into file records), L{rewrite}
(records into pypid's own pages), L{policy} (freshness), L{lru} (eviction
bookkeeping), L{flight} (single flight). I/O: L{client} (treq), L{cache}
(the disk cache), L{fallback} (the two put together on the reactor thread),
L{service} (the client's lifetime).
"""
