"""Analyses of a fitted model: each takes a result and returns a new object or a dict."""
