"""Renderers: plans, diagnostics, change sets and previews as text, markdown or JSON; the status
view; GitHub annotations. Only the shells print what these return. Pure.
"""
