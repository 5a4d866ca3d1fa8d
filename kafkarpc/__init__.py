"""The core both applications stand on: the wire contract and the Kafka plumbing they share.

`gateway` and `workers` import from here and never from each other. Nothing here knows HTTP
or handlers; everything here is what a request needs on either side of Kafka.
"""
