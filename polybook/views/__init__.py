"""Figures and explorers, one module per chapter (``polybook.views.collisions`` and so on).

The chapter modules (``polybook.collisions``, ...) hold the science and compute numbers; the
views draw them. :mod:`polybook.views.explorer` is the one helper every explorer is built on.
"""
