"""Sphinx extension of the course's book: its pages fetch nothing from elsewhere, so they read offline.

The notebooks keep what works in Colab and Jupyter; only the book's copy of a page changes:

- the "Open in Colab" badge image (colab.research.google.com/assets/colab-badge.svg) becomes the
  book's own copy, book/images/colab-badge.svg (the link around it still goes to Colab);
- matplotlib's animations (`to_jshtml`) link Font Awesome 4 from a CDN for the icons of their
  buttons: the link is dropped, because the book's theme ships Font Awesome itself and its script
  draws those `fa fa-play`-style icons.

MathJax (mathjax_path) and the widget scripts (nb_ipywidgets_js) are set in _config.yml;
scripts/check_offline.py opens the built pages with the network unreachable and fails on any
request that leaves the machine. Loaded through `sphinx: local_extensions:` in _config.yml.
"""

import re

from docutils import nodes
from sphinx.transforms import SphinxTransform

REMOTE_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
LOCAL_BADGE = "/book/images/colab-badge.svg"  # a leading "/" is the book's root for Sphinx
FONT_AWESOME_LINK = re.compile(
    r"<link\b[^>]*\bhref=[\"']https?://[^\"']*/font-awesome/[^\"']*[\"'][^>]*>\s*", re.IGNORECASE)


class OfflineAssets(SphinxTransform):
    """Point the Colab badge image at the local copy; drop CDN Font Awesome links from HTML outputs."""

    default_priority = 500

    def apply(self, **kwargs):
        for image in self.document.findall(nodes.image):
            if image.get("uri") == REMOTE_BADGE:
                image["uri"] = LOCAL_BADGE
        for raw in self.document.findall(nodes.raw):
            if "html" not in raw.get("format", "").split():
                continue
            text = raw.astext()
            if FONT_AWESOME_LINK.search(text):
                raw.children = []
                raw += nodes.Text(FONT_AWESOME_LINK.sub("", text))


def setup(app):
    app.add_transform(OfflineAssets)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
