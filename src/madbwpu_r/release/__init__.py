"""Releases: immutable manifests cut from staging, QA decisions, cutover grants and the deploy
pipeline that moves production's release pointer, with no way around its gates."""
