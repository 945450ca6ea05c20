"""Peer task modules for bench/queue.py, loaded by each peer's own worker CLI."""
