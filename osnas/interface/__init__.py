"""The interface generator: component stubs from Jinja2 templates, and the contract checks they are held to.

``render.generate`` writes ``<output-dir>/<kind>/<name>/`` (``build_interface``,
``osnas new``); ``checks`` holds the rules ``osnas check`` reports and the
generated ``test_<name>.py`` runs.
"""
