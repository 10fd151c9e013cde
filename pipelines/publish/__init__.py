"""Publish: the serving database, the marketing exports and the HTML report."""
