"""Adapters from published routing datasets onto the one ingest path of ``graphrouter.ingest``."""
